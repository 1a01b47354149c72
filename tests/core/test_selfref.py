"""Self-reference: gradients through Self (`docs/semantics.md` §6.8) against float64 central differences, nested
checkpointing, and every live-edit path (edit channel, between-run edit, growth) with the state carried exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dmm
import neurons
import programs


def central(f, x: float, h: float = 1e-6) -> float:
    return (f(x + h) - f(x - h)) / (2 * h)


# ----------------------------------------------------------------------------------- §6.8 gradient through Self
def test_spec_gradient_check(x64):
    """L4, L5, L7 of `docs/semantics.md` §6.8 on the matrix wave after 4 cycles: values 2, 2, 3 and derivatives 6, 6, 10."""
    m = dmm.compile(programs.matrix_wave(), dtype=jnp.float64)
    state4 = m.run(4, record=[]).state
    pos = m.network.index("self.out", "self.accum")
    assert m.read(state4, "self.out")[pos] == 1.0

    def losses(s):
        w4 = m.read(state4, "self.out")
        st_ = m.write(state4, "self.out", w4.at[pos].set(s))
        trace = m.run(1, state=st_, record=["self.accum", "self.out"])
        xa, w5 = trace["self.accum"][0][pos], trace["self.out"][0][pos]
        return jnp.stack([s**2 + w5**2, s**2 + xa**2, s**2 + xa**2 + w5**2])

    np.testing.assert_array_equal(losses(1.0), [2.0, 2.0, 3.0])
    jac = jax.jacobian(losses)(1.0)
    np.testing.assert_allclose(jac, [6.0, 6.0, 10.0], rtol=1e-12)
    numeric = [central(lambda s, i=i: float(losses(s)[i]), 1.0) for i in range(3)]
    np.testing.assert_allclose(jac, numeric, rtol=1e-6)


def test_gradient_with_respect_to_initial_matrix_and_updates(x64):
    """d(loss)/d(W_0) through 20 cycles of a Self program, checked entry by entry against central differences."""
    m = dmm.compile(programs.live_edit_counter(), dtype=jnp.float64)

    def loss(params):
        return jnp.sum(m.run(20, params=params, record=["cnt.out"])["cnt.out"] ** 2) / 1e3

    grad = jax.grad(loss)(m.params)
    for src, dst in [("cnt.out", "cnt.accum"), ("ticker.out", "cnt.delta"), ("updater.out", "self.delta")]:
        k, pos = m.entry(src, dst)

        def f(w, k=k, pos=pos):
            return float(loss({**m.params, "W": {**m.params["W"], k: m.params["W"][k].at[pos].set(w)}}))

        w0 = float(m.params["W"][k][pos])
        np.testing.assert_allclose(grad["W"][k][pos], central(f, w0), rtol=1e-6)


# --------------------------------------------------------------------------- property: random self-modifying nets
NET = dmm.NETWORK


def random_program(rng: np.random.Generator) -> dmm.Program:
    """Self, a few smooth number neurons, a reflection neuron reading W, constant and scheduled matrix deltas."""
    p = dmm.Program()
    neurons.add_self(p)
    nums = []
    for i in range(int(rng.integers(2, 5))):
        kind = "accum" if i == 0 else rng.choice(["tanh", "accum", "sine", "const"])  # at least one input port
        name = f"{kind}{i}"
        if kind == "tanh":
            p.add(name, neurons.tanh())
            nums.append((name, ["in"]))
        elif kind == "accum":
            p.add(name, neurons.accumulator(), initial={"out": rng.uniform(-1, 1)})
            nums.append((name, ["accum", "delta"]))
        elif kind == "sine":
            p.add(name, neurons.sine())
            nums.append((name, ["a", "x", "b"]))
        else:
            p.add(name, neurons.const(rng.uniform(-1, 1)))
            nums.append((name, []))
    inputs = [f"{n}.{q}" for n, qs in nums for q in qs]
    outputs = [f"{n}.out" for n, _ in nums]
    for dst in inputs:
        for src in outputs:
            if rng.random() < 0.5:
                p.link(src, dst, rng.uniform(-0.5, 0.5))
    entries = {(str(rng.choice(outputs)), str(rng.choice(inputs))): rng.uniform(-0.5, 0.5) for _ in range(3)}
    p.add("refl", neurons.tanh(NET))  # reflection: reads W, emits tanh(w·W)
    p.link("self.out", "refl.in", rng.uniform(-0.5, 0.5))
    p.link("refl.out", "self.delta", rng.uniform(-0.2, 0.2))
    p.add("hebb", neurons.mult(NET))  # quadratic in W
    p.link("self.out", "hebb.mask", rng.uniform(-0.5, 0.5))
    p.link("refl.out", "hebb.main", 1.0)
    p.link("hebb.out", "self.delta", rng.uniform(-0.2, 0.2))
    p.add("cm", neurons.constant_matrix(entries))
    p.link("cm.out", "self.delta", rng.uniform(-0.3, 0.3))
    events = {int(rng.integers(1, 6)): {(str(rng.choice(outputs)), str(rng.choice(inputs))): rng.uniform(-1, 1)}}
    p.add("edits", neurons.edit_channel(events))
    p.link("edits.out", "self.delta", 1.0)
    return p


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_gradient_property_random_self_modifying(seed):
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        m = dmm.compile(random_program(rng), dtype=jnp.float64)
        steps = 6

        def loss(params):
            trace = m.run(steps, params=params, record=list(m.layout.cols["number"]) + ["self.out"], remat="none")
            nums = sum(jnp.sum(trace[s] ** 2) for s in m.layout.cols["number"])
            return nums + 0.1 * jnp.sum(trace["self.out"][-1] ** 2)

        leaves, tree = jax.tree_util.tree_flatten(m.params)
        value, grad = jax.value_and_grad(loss)(m.params)
        grad = jax.tree_util.tree_leaves(grad)
        for _ in range(2):
            v = [rng.normal(size=np.shape(x)) for x in leaves]
            along = sum(float(jnp.vdot(g, d)) for g, d in zip(grad, v))

            def f(t, v=v):
                return float(loss(jax.tree_util.tree_unflatten(tree, [x + t * d for x, d in zip(leaves, v)])))

            # rounding in the difference quotient is about eps·|loss| / h: allow for it when `along` is tiny
            np.testing.assert_allclose(along, central(f, 0.0), rtol=1e-6, atol=1e-9 * (1 + abs(float(value))))


# -------------------------------------------------------------------------------------- nested checkpointing
def test_nested_remat_same_values_and_gradients():
    m = dmm.compile(programs.matrix_wave())
    m2 = dmm.compile(programs.live_edit_counter())
    for machine, stream in ((m, "self.out"), (m2, "cnt.out")):

        def loss(params, remat, machine=machine, stream=stream):
            trace = machine.run(11, params=params, record=[stream], remat=remat)
            return jnp.sum(jnp.sin(trace[stream]))

        values = {r: machine.run(11, record=[stream], remat=r)[stream] for r in ("none", "nested")}
        grads = {r: jax.grad(loss)(machine.params, r) for r in ("none", "nested")}
        np.testing.assert_array_equal(values["nested"], values["none"])
        # recomputation may fuse differently: equal up to float32 rounding
        for a, b in zip(jax.tree_util.tree_leaves(grads["nested"]), jax.tree_util.tree_leaves(grads["none"])):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_nested_remat_reduces_temp_memory():
    """Nested checkpointing stores about sqrt(T) matrices instead of T (XLA temp memory of the compiled gradient)."""
    p = dmm.Program()
    neurons.add_self(p)
    vec = dmm.Kind("vec", (8,))
    for i in range(40):
        p.add(f"t{i}", neurons.tanh(vec))
    for i in range(40):
        p.link(f"t{i}.out", f"t{(i + 1) % 40}.in", 0.5)
    p.add("refl", neurons.tanh(NET))
    p.link("self.out", "refl.in", 0.1)
    p.link("refl.out", "self.delta", -0.01)
    m = dmm.compile(p)
    y0 = jnp.ones((40, 8))

    def loss(params, remat):
        state = m.init_state(params)
        state = state._replace(outputs={**state.outputs, "vec": y0})
        _, rec, _ = m.simulate(params, state, {}, None, steps=64, record=("t0.out",), remat=remat)
        return jnp.sum(rec["t0.out"] ** 2)

    temp = {}
    for r in ("none", "nested"):
        compiled = jax.jit(jax.grad(loss), static_argnums=1).lower(m.params, r).compile()
        temp[r] = compiled.memory_analysis().temp_size_in_bytes
    assert temp["nested"] < temp["none"] / 2, temp


# -------------------------------------------------------------------------------------------- edit channel
@pytest.mark.parametrize("edit_cycle", [1, 3, 6])
def test_edit_channel_latency(edit_cycle):
    """An edit emitted at cycle e enters W at e + 1 and is first used by the down movement of e + 2."""
    m = dmm.compile(programs.live_edit_counter(edit_cycle, delta=-0.5))
    base = dmm.compile(programs.live_edit_counter(edit_cycle, delta=0.0))
    trace = m.run(10, record=["cnt.accum", "self.out", "updater.out"])
    ref = base.run(10, record=["cnt.accum", "self.out", "updater.out"])
    pos = m.network.index("cnt.out", "cnt.accum")
    emitted = np.flatnonzero(trace["updater.out"][:, pos]) + 1
    assert list(emitted) == [edit_cycle]
    changed_w = np.flatnonzero(trace["self.out"][:, pos] != ref["self.out"][:, pos]) + 1
    assert changed_w[0] == edit_cycle + 1
    changed_x = np.flatnonzero(trace["cnt.accum"] != ref["cnt.accum"]) + 1
    assert changed_x[0] == edit_cycle + 2


def test_edit_channel_fed_by_caller():
    """The same edit, supplied through run(inputs=...) instead of the channel's schedule, gives the same trace."""
    scheduled = dmm.compile(programs.live_edit_counter(4, -0.5))
    m = dmm.compile(programs.live_edit_counter(edit_cycle=1, delta=0.0))
    edits = np.zeros((9, *m.network.kind.shape), np.float32)
    edits[3] = m.delta({("cnt.out", "cnt.accum"): -0.5})  # row 3 = cycle 4
    fed = m.run(9, inputs={"updater.out": edits}, record=["cnt.out", "self.out"])
    ref = scheduled.run(9, record=["cnt.out", "self.out"])
    np.testing.assert_array_equal(fed["cnt.out"], ref["cnt.out"])
    np.testing.assert_array_equal(fed["self.out"], ref["self.out"])


def test_delta_helper():
    m = dmm.compile(programs.live_edit_counter())
    d = m.delta({("cnt.out", "cnt.accum"): -0.5, ("ticker.out", "cnt.delta"): 2.0})
    assert d.shape == m.network.kind.shape and d.dtype == m.dtype
    assert d[m.network.index("cnt.out", "cnt.accum")] == -0.5
    assert d[m.network.index("ticker.out", "cnt.delta")] == 2.0
    assert np.count_nonzero(d) == 2
    # the edit a delta value makes is exactly its entries: W_5 = W_4 + delta
    state = m.run(4, record=[]).state
    edited = m.edit(state, {("cnt.out", "cnt.accum"): -0.5, ("ticker.out", "cnt.delta"): 2.0})
    np.testing.assert_array_equal(m.read(edited, "self.out") - m.read(state, "self.out"), d)
    with pytest.raises(dmm.ProgramError, match="no network entry"):
        m.delta({("cnt.out", "self.delta"): 1.0})  # a number port and a matrix port: no such entry
    q = dmm.Program()
    q.add("one", neurons.const(1.0))
    with pytest.raises(dmm.ProgramError, match="no NETWORK-kind port"):
        dmm.compile(q).delta({})


# --------------------------------------------------------------------------------------- between-run edit
def test_continuation_is_exact():
    m = dmm.compile(programs.live_edit_counter())
    whole = m.run(9, record="all")
    first = m.run(5, record="all")
    rest = m.run(4, state=first.state, record="all")
    assert int(rest.state.cycle) == 9 and list(rest.cycles) == [6, 7, 8, 9]
    for s in whole:
        np.testing.assert_array_equal(np.concatenate([first[s], rest[s]]), whole[s])
    for k in whole.state.outputs:
        np.testing.assert_array_equal(rest.state.outputs[k], whole.state.outputs[k])


def test_between_run_edit_equals_uninterrupted_run():
    """Stop after cycle 5, add ΔW to the running matrix, continue: the same as the channel emitting ΔW at cycle 4."""
    edit = {("cnt.out", "cnt.accum"): -0.5}
    m = dmm.compile(programs.live_edit_counter(delta=0.0))
    first = m.run(5, record=["cnt.out"])
    edited = m.edit(first.state, edit)
    # the state is carried over exactly: only the edited entry of W changed, by exactly delta
    for k, y in first.state.outputs.items():
        diff = np.asarray(edited.outputs[k]) - np.asarray(y)
        if k == "network":
            j = m.layout.cols["network"].index("self.out")
            expected = np.zeros_like(diff)
            expected[j] = m.delta(edit)
            np.testing.assert_array_equal(diff, expected)
        else:
            np.testing.assert_array_equal(diff, 0)
    assert int(edited.cycle) == 5
    assert m.weight("cnt.out", "cnt.accum", state=edited) == 0.5
    rest = m.run(4, state=edited, record=["cnt.out", "self.out"])
    ref = dmm.compile(programs.live_edit_counter(4, -0.5)).run(9, record=["cnt.out", "self.out"])
    np.testing.assert_array_equal(np.concatenate([first["cnt.out"], rest["cnt.out"]]), ref["cnt.out"])
    np.testing.assert_array_equal(rest["self.out"], ref["self.out"][5:])
    np.testing.assert_array_equal(rest["cnt.out"], [3.0, 2.5, 2.25, 2.125])


def test_edit_needs_self():
    q = dmm.Program()
    q.add("one", neurons.const(1.0))
    m = dmm.compile(q)
    with pytest.raises(dmm.ProgramError, match="Self neuron; this program has none"):
        m.edit(m.init_state(), {})


# ---------------------------------------------------------------------------------------------------- growth
def test_growth_carries_state_and_running_matrix():
    """Grow a running counter by a neuron and links; old streams keep their values, new ones start at their
    initial values, the running (live-edited) matrix carries over, and the grown machine continues correctly."""
    old = dmm.compile(programs.live_edit_counter(2, delta=-1.0))  # the edit removes cnt's self-loop (weight 0)
    first = old.run(6, record=["cnt.out"])
    np.testing.assert_array_equal(first["cnt.out"], [0, 1, 2, 1, 1, 1])
    p = old.program.copy()
    p.add("twice", neurons.identity())
    p.add("tally", neurons.accumulator(), initial={"out": 10.0})
    p.link("cnt.out", "twice.in", 2.0)
    p.link("tally.out", "tally.accum", 1.0)
    p.link("twice.out", "tally.delta", 1.0)
    p.add("more", neurons.edit_channel({8: {("twice.out", "tally.delta"): 1.0}}))
    p.link("more.out", "self.delta", 1.0)
    new = dmm.compile(p)
    params, state = new.transfer(old, first.state)
    # old streams keep their values exactly; new streams start at their initial values
    for s in old.layout.cols["number"]:
        assert new.read(state, s) == old.read(first.state, s)
    assert new.read(state, "twice.out") == 0.0 and new.read(state, "tally.out") == 10.0
    np.testing.assert_array_equal(new.read(state, "more.out"), 0.0)
    # the running matrix: old entries keep their running values (the zeroed self-loop stays zero), new links
    # take their weights, NETWORK-kind streams are re-laid out entry by entry
    assert old.weight("cnt.out", "cnt.accum", state=first.state) == 0.0
    assert new.weight("cnt.out", "cnt.accum", state=state) == 0.0
    assert new.weight("cnt.out", "twice.in", state=state) == 2.0
    running_old = old.weights(state=first.state)
    running_new = new.weights(state=state)
    assert {e: w for e, w in running_new.items() if e in running_old} == running_old
    assert set(running_new) - set(running_old) == {("cnt.out", "twice.in"), ("tally.out", "tally.accum"),
                                                   ("twice.out", "tally.delta"), ("more.out", "self.delta")}
    assert int(state.cycle) == 6
    # continuing: cnt stays at 1; twice = 2·cnt one cycle late; tally adds twice one more cycle late, and from
    # cycle 10 (edit at 8, used at 10) with weight 2
    trace = new.run(6, params=params, state=state, record=["cnt.out", "twice.out", "tally.out"])
    np.testing.assert_array_equal(trace["cnt.out"], 1.0)
    np.testing.assert_array_equal(trace["twice.out"], 2.0)
    tally, expected = 10.0, []
    for c in range(7, 13):
        tally += (2.0 if c >= 10 else 1.0) * (2.0 if c >= 8 else 0.0)
        expected.append(tally)
    np.testing.assert_array_equal(trace["tally.out"], expected)


def test_growth_of_network_streams():
    """A NETWORK-kind register keeps its value entry by entry when the network grows."""
    old = dmm.compile(programs.matrix_wave())
    first = old.run(4, record=[])
    p = old.program.copy()
    p.add("extra", neurons.identity(NET))
    p.link("extra.out", "extra.in", 1.0)
    new = dmm.compile(p)
    assert new.network.kind.shape != old.network.kind.shape
    params, state = new.transfer(old, first.state)
    for k in (1, 2, 3):
        s = f"update-{k}.out"
        a, b = np.asarray(old.read(first.state, s)), np.asarray(new.read(state, s))
        for src in old.layout.cols["network"]:
            for dst in old.layout.rows["network"]:
                assert a[old.network.index(src, dst)] == b[new.network.index(src, dst)]
        assert np.count_nonzero(b) == np.count_nonzero(a)
    grown = new.run(6, params=params, state=state, record=["self.out"])
    ref = old.run(6, state=first.state, record=["self.out"])
    for c in range(6):
        for k in (1, 2, 3):
            e = (f"update-{k}.out", "self.delta")
            assert grown["self.out"][c][new.network.index(*e)] == ref["self.out"][c][old.network.index(*e)]
