"""Tests of dmm.train: gradients against float64 central differences, masks, penalties, clipping, batches,
curriculum, determinism, the NaN/Inf guard, progress and metrics logs, and training through Self."""

from __future__ import annotations

import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dmm
import dmm.train
import neurons

V = neurons.vkind("ab.")


def small_network(seed: int = 0) -> dmm.Program:
    """A small V-value network with the synthesis neuron types: text input -> accumulator -> norm / dot ->
    compare -> sink, plus a few extra trainable links (all nonlinearities of the detector synthesis)."""
    rng = np.random.default_rng(seed)
    p = dmm.Program()
    p.add("timer", neurons.v_timer(V))
    p.add("input", neurons.v_text_input(V, "abba.", 2))
    p.add("one", neurons.const(V.onehot(":number"), V))
    p.add("eos", neurons.const(V.onehot("."), V))
    p.add("acc", neurons.accumulator(V))
    p.add("norm", neurons.v_norm(V))
    p.add("dot", neurons.v_dot(V))
    p.add("cmp", neurons.v_compare(V))
    p.add("out", neurons.sink({"y": V, "z": V}))
    p.link("timer.out", "timer.in", 1.0, trainable=False)
    p.link("timer.out", "input.timer", 1.0, trainable=False)
    p.link("acc.out", "acc.accum", 1.0, trainable=False)
    soft = [("input.out", "acc.delta"), ("one.out", "acc.delta"), ("acc.out", "norm.in"), ("acc.out", "dot.y"),
            ("eos.out", "dot.x"), ("input.out", "dot.x"), ("norm.out", "cmp.x"), ("one.out", "cmp.y"),
            ("acc.out", "cmp.y"), ("cmp.true", "out.y"), ("cmp.false", "out.y"), ("dot.out", "out.z"),
            ("norm.out", "out.z")]
    for (s, d), w in zip(soft, rng.uniform(0.3, 1.2, len(soft)) * rng.choice([-1, 1], len(soft))):
        p.link(s, d, float(w))
    return p


def sink_loss(machine, target):
    n = V.index(":number")

    def loss(trace, data):
        y = jnp.stack([trace["out.y"][:, n], trace["out.z"][:, n]], 1)
        return jnp.sum((y - target[: y.shape[0]]) ** 2)

    return loss


def test_gradient_matches_float64_central_differences(x64):
    m = dmm.compile(small_network(), dtype=jnp.float64)
    target = jnp.asarray(np.random.default_rng(1).uniform(0, 2, (12, 2)))
    # SGD with learning rate 1: the update is exactly minus the (masked) gradient of loss + penalties.
    tr = dmm.train.Trainer(m, sink_loss(m, target), optax.sgd(1.0), 12, record=["out.y", "out.z"], l1=0.03, l2=0.02, guard=False)
    st = tr.init()
    new, metrics = tr.update(st)
    grad = -(np.asarray(new.params["W"]["v"]) - np.asarray(st.params["W"]["v"]))
    mask = np.asarray(st.mask["W"]["v"])
    assert mask.sum() == 13

    def objective(W):
        s = st._replace(params={**st.params, "W": {"v": jnp.asarray(W)}})
        me = tr.evaluate(s)
        return float(me.loss) + float(me.penalty)

    W0 = np.asarray(st.params["W"]["v"])
    assert objective(W0) == pytest.approx(float(metrics.loss) + float(metrics.penalty), rel=1e-12)
    h = 1e-6
    for i, j in zip(*np.nonzero(mask)):
        Wp, Wm = W0.copy(), W0.copy()
        Wp[i, j] += h
        Wm[i, j] -= h
        fd = (objective(Wp) - objective(Wm)) / (2 * h)
        assert grad[i, j] == pytest.approx(fd, rel=1e-6, abs=1e-7), (i, j)
    # entries outside the mask (hard links, absent links) do not move
    assert np.array_equal(grad[~mask], np.zeros((~mask).sum()))


def test_penalties_and_mask_of_neuron_parameters():
    p = dmm.Program()
    p.add("one", neurons.const(1.0))
    p.add("lin", neurons.linear(matrix=[[0.5]], bias=[0.25]))
    p.add("out", neurons.sink(["y"]))
    p.link("one.out", "lin.in", 2.0)
    p.link("lin.out", "out.y", 1.0, trainable=False)
    m = dmm.compile(p)
    tr = dmm.train.Trainer(m, lambda t, d: jnp.sum(t["out.y"] ** 2), optax.sgd(0.1), 3, l1=0.5, l2=0.25)
    st = tr.init()
    me = tr.evaluate(st)
    # trainable: the link (2.0) and the linear neuron's matrix (0.5) and bias (0.25); the hard link is not penalised
    assert float(me.penalty) == pytest.approx(0.5 * (2 + 0.5 + 0.25) + 0.25 * (4 + 0.25 + 0.0625))
    # X_c[out.y] = Y_{c-1}[lin]: Y_0 = 0; Y_1 = lin(0) = 0.25 (one starts at 0); Y_2 = lin(2·1) = 0.5·2 + 0.25
    assert float(me.loss) == pytest.approx(0.25**2 + 1.25**2)
    new, _ = tr.update(st)
    assert not np.array_equal(np.asarray(m.param("lin", "matrix", new.params)), np.asarray(m.param("lin", "matrix")))
    assert float(m.weight("lin.out", "out.y", new.params)) == 1.0  # hard link fixed
    frozen = jax.tree_util.tree_map(lambda x: jnp.zeros_like(x, bool), st.mask)
    st2 = tr.init(mask=frozen)
    new2, me2 = tr.update(st2)
    assert float(me2.penalty) == 0.0 and int(me2.links) == 0
    for a, b in zip(jax.tree_util.tree_leaves(new2.params), jax.tree_util.tree_leaves(st2.params)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def counter():
    p = dmm.Program()
    p.add("one", neurons.const(1.0))
    p.add("cnt", neurons.accumulator())
    p.add("out", neurons.sink(["y"]))
    p.link("cnt.out", "cnt.accum", 1.0, trainable=False)
    p.link("one.out", "cnt.delta", 1.0)
    p.link("cnt.out", "out.y", 1.0)
    return dmm.compile(p)


def test_clip_norm_limits_the_update():
    m = counter()
    loss = lambda t, d: jnp.sum(t["out.y"] ** 2)
    free = dmm.train.Trainer(m, loss, optax.sgd(1.0), 5)
    clipped = dmm.train.Trainer(m, loss, optax.sgd(1.0), 5, clip_norm=0.5)
    st = free.init()
    n1, me = free.update(st)
    n2, _ = clipped.update(st)
    d1 = np.asarray(n1.params["W"]["number"] - st.params["W"]["number"])
    d2 = np.asarray(n2.params["W"]["number"] - st.params["W"]["number"])
    assert np.linalg.norm(d1) == pytest.approx(float(me.grad_norm), rel=1e-6)
    assert np.linalg.norm(d2) == pytest.approx(0.5, rel=1e-6)
    np.testing.assert_allclose(d2, d1 * 0.5 / np.linalg.norm(d1), rtol=1e-6)


def test_curriculum_sets_the_horizon():
    m = counter()
    seen = []
    # out.y at cycle c is c - 2 (counts from cycle 2, one more link): loss = Σ_{c ≤ h} (c - 2)+
    tr = dmm.train.Trainer(m, lambda t, d: jnp.sum(t["out.y"]), optax.sgd(0.0), 10, record=["out.y"], curriculum=((0, 3), (2, 6), (3, 10)))
    st = tr.init()
    for _ in range(4):
        st, me = tr.update(st)
        seen.append(float(me.loss))
    assert seen == [sum(max(c - 2, 0) for c in range(1, h + 1)) for h in (3, 3, 6, 10)]
    with pytest.raises(dmm.ProgramError, match="curriculum"):
        dmm.train.Trainer(m, lambda t, d: 0.0, optax.sgd(0.0), 10, curriculum=((1, 3),))
    with pytest.raises(dmm.ProgramError, match="outside"):
        dmm.train.Trainer(m, lambda t, d: 0.0, optax.sgd(0.0), 10, curriculum=((0, 11),))


def test_a_curriculum_compiles_each_horizon_once():
    # JAX traces a jitted function exactly when it compiles it (a cache miss), and every trace of a training step
    # calls the loss once: the loss's calls count the step's compilations
    m = counter()
    traced = []

    def loss(t, d):
        traced.append(t.steps)
        return jnp.sum((t["out.y"] - 1.0) ** 2)

    tr = dmm.train.Trainer(m, loss, optax.adam(1e-2), 6, curriculum=((0, 2), (3, 4), (6, 6)))
    tr.fit(tr.init(), 9, progress=False)
    assert traced == [2, 4, 6]
    tr.fit(tr.init(), 9, progress=False)  # a second run reuses every compilation
    assert traced == [2, 4, 6]
    tr.fit(tr.init(), 9, chunk=3, progress=False)  # chunks of 3 steps: one scan per horizon
    assert traced == [2, 4, 6] * 2
    tr.fit(tr.init(), 9, chunk=3, progress=False)
    assert traced == [2, 4, 6] * 2


def test_batched_inputs_average_the_per_sequence_gradients():
    p = dmm.Program()
    p.add("x", neurons.external())
    p.add("acc", neurons.accumulator())
    p.add("out", neurons.sink(["y"]))
    p.link("acc.out", "acc.accum", 0.5)
    p.link("x.out", "acc.delta", 0.7)
    p.link("acc.out", "out.y", 1.2)
    m = dmm.compile(p)
    xs = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    ts = np.random.default_rng(1).normal(size=(3, 6)).astype(np.float32)
    loss = lambda t, d: jnp.sum((t["out.y"] - d) ** 2)
    batched = dmm.train.Trainer(m, loss, optax.sgd(1.0), 6, record=["out.y"], batched=True)
    single = dmm.train.Trainer(m, loss, optax.sgd(1.0), 6, record=["out.y"])
    st = single.init()
    nb, mb = batched.update(st, {"x.out": xs}, ts)
    deltas, losses = [], []
    for b in range(3):
        n1, m1 = single.update(st, {"x.out": xs[b]}, ts[b])
        deltas.append(np.asarray(n1.params["W"]["number"] - st.params["W"]["number"]))
        losses.append(float(m1.loss))
    assert float(mb.loss) == pytest.approx(np.mean(losses), rel=1e-5)
    np.testing.assert_allclose(np.asarray(nb.params["W"]["number"] - st.params["W"]["number"]), np.mean(deltas, 0),
                               rtol=1e-4, atol=1e-6)


@dmm.neuron_type("test_train_noise")
def noise_type():
    """out = in + N(0, 1) (a stochastic test neuron)."""
    return dmm.make_type({"in": dmm.NUMBER}, {"out": dmm.NUMBER},
                         fn=lambda p, x, ctx: {"out": x["in"] + jax.random.normal(ctx.key)}, stochastic=True)


def test_training_is_deterministic_given_the_key():
    p = dmm.Program()
    p.add("one", neurons.const(1.0))
    p.add("noisy", noise_type())
    p.add("out", neurons.sink(["y"]))
    p.link("one.out", "noisy.in", 0.3)
    p.link("noisy.out", "out.y", 0.8)
    m = dmm.compile(p)
    tr = dmm.train.Trainer(m, lambda t, d: jnp.sum(t["out.y"] ** 2), optax.adam(1e-2), 8)

    def run(key):
        st = tr.init(key=key)
        st, hist = tr.fit(st, 5, progress=False)
        return hist["loss"], np.asarray(st.params["W"]["number"])

    a, b, c = run(jax.random.key(1)), run(jax.random.key(1)), run(jax.random.key(2))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert len(set(a[0].tolist())) == 5  # every step draws fresh noise


def blow_up(weight: float = 1e15):
    p = dmm.Program()
    p.add("one", neurons.const(1.0))
    p.add("acc", neurons.accumulator())
    p.add("out", neurons.sink(["y"]))
    p.link("acc.out", "acc.accum", weight)
    p.link("one.out", "acc.delta", 1.0)
    p.link("acc.out", "out.y", 1.0)
    return dmm.compile(p)


def test_nan_guard_names_the_first_cycle_and_stream():
    m = blow_up()
    # independent expectation: float32 recurrence acc_c = w·acc_{c-1} + one_{c-1}, one_0 = 0, one_c = 1; the input
    # X_c[acc.accum] = w·acc_{c-1} overflows in the same cycle as acc_c, and inputs come first within a cycle
    acc, one, first = np.float32(0), np.float32(0), None
    with np.errstate(over="ignore"):
        for c in range(1, 20):
            acc, one = np.float32(1e15) * acc + one, np.float32(1)
            if not np.isfinite(acc):
                first = c
                break
    assert first is not None
    tr = dmm.train.Trainer(m, lambda t, d: jnp.sum(t["out.y"]), optax.sgd(1e-3), 12)
    st = tr.init()
    with pytest.raises(dmm.NonFiniteError, match=f"training step 1: stream 'acc.accum' became non-finite at cycle {first}"):
        tr.update(st)
    with pytest.raises(dmm.NonFiniteError):
        tr.fit(st, 3, progress=False)
    with pytest.raises(dmm.NonFiniteError, match=f"evaluation at step 0: stream 'acc.accum' .* cycle {first}"):
        tr.evaluate(st)
    # below the overflow horizon everything is finite and training proceeds
    ok = dmm.train.Trainer(m, lambda t, d: jnp.sum(t["out.y"]), optax.sgd(1e-40), first - 1)
    ok.update(ok.init())


def test_nan_guard_keeps_the_last_finite_state():
    # the loss rewards growth, so SGD raises the self-loop weight until the 12-cycle episode overflows a few steps in
    m = blow_up(1.5)
    tr = dmm.train.Trainer(m, lambda t, d: -jnp.sum(t["out.y"]), optax.sgd(1e-2), 12)
    good = tr.init()
    for _ in range(50):  # step by step: the last state whose update succeeded
        try:
            nxt, _ = tr.update(good)
        except dmm.NonFiniteError:
            break
        good = nxt
    else:
        pytest.fail("the episode never overflowed")
    assert int(good.step) > 0
    for chunk in (1, 4):
        with pytest.raises(dmm.NonFiniteError) as info:
            tr.fit(tr.init(), 50, chunk=chunk, progress=False)
        state = info.value.state
        assert int(state.step) == int(good.step)
        assert np.array_equal(np.asarray(state.params["W"]["number"]), np.asarray(good.params["W"]["number"]))


def test_progress_bar_and_metrics_log(tmp_path):
    m = counter()
    tr = dmm.train.Trainer(m, lambda t, d: jnp.sum((t["out.y"] - 1.0) ** 2), optax.adam(1e-2), 5)
    out = io.StringIO()
    log = tmp_path / "metrics.jsonl"
    st, hist = tr.fit(tr.init(), 20, progress=True, stream=out, log=log)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("step 20/20 [") and "loss" in lines[-1] and "links 2" in lines[-1]
    rows = [json.loads(l) for l in log.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 21))
    assert [r["loss"] for r in rows] == pytest.approx(hist["loss"].tolist())
    assert all(r["links"] == 2 and r["horizon"] == 5 for r in rows)
    assert int(st.step) == 20


def self_program():
    p = dmm.Program()
    neurons.add_self(p)
    p.add("upd", neurons.edit_channel())
    p.link("upd.out", "self.delta", 1.0, trainable=False)
    p.add("one", neurons.const(1.0))
    p.add("acc", neurons.accumulator())
    p.add("h", neurons.tanh())
    p.add("out", neurons.sink(["y"]))
    p.link("acc.out", "acc.accum", 0.9)
    p.link("one.out", "acc.delta", 0.4)
    p.link("acc.out", "h.in", 0.7)
    p.link("h.out", "out.y", 1.3)
    p.link("one.out", "out.y", -0.2)
    return dmm.compile(p)


def test_training_through_self_matches_ordinary_training():
    m = self_program()
    target = jnp.linspace(0.0, 1.0, 10)
    loss = lambda t, d: jnp.sum((t["out.y"] - target) ** 2)
    ordinary = dmm.train.Trainer(m, loss, optax.adam(3e-2), 10, record=["out.y"], l1=1e-3)
    through = dmm.train.Trainer(m, loss, optax.adam(3e-2), 10, record=["out.y"], l1=1e-3, through_self="upd.out")
    a, b = ordinary.init(), through.init()
    for _ in range(6):
        a, ma = ordinary.update(a)
        b, mb = through.update(b)
        assert float(mb.loss) == pytest.approx(float(ma.loss), rel=1e-6)
        # the running machine's own matrix (Self's output) is the ordinarily trained matrix
        running = m.matrices(state=b.run)["number"]
        np.testing.assert_allclose(np.asarray(running), np.asarray(a.params["W"]["number"]), rtol=1e-6, atol=1e-7)
    assert float(ma.loss) < 0.5 * float(ordinary.evaluate(ordinary.init()).loss)
    # the update entered through the machine: 10 episode cycles + 2 delivery cycles per step
    assert int(b.run.cycle) == 12


def test_training_through_self_continuing_machine_learns_while_it_runs():
    m = self_program()
    loss = lambda t, d: jnp.sum((t["out.y"] - 0.5) ** 2)
    tr = dmm.train.Trainer(m, loss, optax.sgd(0.05), 5, record=["out.y"], through_self="upd.out", episodes="continue")
    st = tr.init()
    # independent expectation for one step: gradient of the episode loss from the running state w.r.t. its matrix
    W = m.matrices(state=st.run)

    def episode(Wn):
        value = m.network.flatten({**W, "number": Wn}, jnp)
        s0 = m.write(st.run, "self.out", value)
        return loss(m.run(5, state=s0, record=["out.y"]), None)

    g = jnp.where(st.mask["W"]["number"], jax.grad(episode)(W["number"]), 0.0)
    st1, _ = tr.update(st)
    np.testing.assert_allclose(np.asarray(m.matrices(state=st1.run)["number"]), np.asarray(W["number"] - 0.05 * g),
                               rtol=1e-6, atol=1e-7)
    assert int(st1.run.cycle) == 7
    st2, _ = tr.update(st1)
    assert int(st2.run.cycle) == 14  # the machine keeps running from where it was


def test_bad_configurations_are_rejected():
    m = counter()
    loss = lambda t, d: 0.0
    with pytest.raises(dmm.ProgramError, match="horizon"):
        dmm.train.Trainer(m, loss, optax.sgd(0.1), 0)
    with pytest.raises(dmm.ProgramError, match="Self"):
        dmm.train.Trainer(m, loss, optax.sgd(0.1), 3, through_self="one.out")
    with pytest.raises(dmm.ProgramError, match="continue"):
        dmm.train.Trainer(m, loss, optax.sgd(0.1), 3, episodes="continue")
    with pytest.raises(dmm.UnknownStreamError):
        dmm.train.Trainer(m, loss, optax.sgd(0.1), 3, record=["nope.out"])
    tr = dmm.train.Trainer(m, lambda t, d: t["out.y"], optax.sgd(0.1), 3)
    with pytest.raises(dmm.ProgramError, match="scalar"):
        tr.update(tr.init())


def test_chunked_fit_equals_step_by_step():
    m = counter()
    loss = lambda t, d: jnp.sum((t["out.y"] - 1.0) ** 2)
    tr = dmm.train.Trainer(m, loss, optax.adam(1e-2), 6, curriculum=((0, 3), (5, 6)))
    a, ha = tr.fit(tr.init(), 11, progress=False)
    b, hb = tr.fit(tr.init(), 11, chunk=4, progress=False)  # chunks stop at the horizon change (step 5)
    for f in ha:
        assert np.array_equal(ha[f], hb[f]), f
    assert np.array_equal(np.asarray(a.params["W"]["number"]), np.asarray(b.params["W"]["number"]))
    # the guard still names the failing step when it trips inside a chunk
    bad = dmm.train.Trainer(blow_up(), lambda t, d: jnp.sum(t["out.y"]), optax.sgd(1e-3), 12)
    with pytest.raises(dmm.NonFiniteError, match="training step 1: stream 'acc.accum'"):
        bad.fit(bad.init(), 8, chunk=4, progress=False)


def test_loss_on_the_final_state():
    m = counter()
    # the counter's final value after h cycles is h - 1 (it starts counting at cycle 2): loss = (cnt_h - 3)²
    loss = lambda t, d: (m.read(t.state, "cnt.out") - 3.0) ** 2
    tr = dmm.train.Trainer(m, loss, optax.sgd(0.01), 6, record=[])
    st = tr.init()
    assert float(tr.evaluate(st).loss) == pytest.approx((5 - 3.0) ** 2)
    # d loss / d w(one -> cnt.delta) = 2·(cnt_6 - 3)·5 (five increments of w), SGD moves w by -0.01 of it
    new, _ = tr.update(st)
    assert m.weight("one.out", "cnt.delta", new.params) == pytest.approx(1.0 - 0.01 * 2 * 2 * 5)
