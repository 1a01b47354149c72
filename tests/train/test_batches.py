"""Tests of training from a stream of batches (`Trainer.fit(..., batches=...)`: iterators and batch functions) and
of held-out evaluation (`eval_every`, `eval_batch`, the trainer's `metrics`): against hand loops of
`Trainer.update` / `Trainer.measure` / `Trainer.evaluate` over the same batches."""

from __future__ import annotations

import functools
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import counter

import dmm
import dmm.train
import neurons

B, T = 2, 4


def machine():
    """src (external) -> acc (leaky accumulator) -> out.y."""
    p = counter("src", "acc", keep=0.5)
    p.add("out", neurons.sink(["y"]))
    p.link("acc.out", "out.y", 1.0)
    return dmm.compile(p)


def loss(trace, data):
    return jnp.mean((trace["out.y"] - data) ** 2)


def err(trace, data):
    return jnp.mean(jnp.abs(trace["out.y"] - data))


def trainer(**kw):
    return dmm.train.Trainer(machine(), loss, optax.adam(3e-2), T, record=["out.y"], batched=True, **kw)


@functools.cache
def shared():
    """One trainer (with the metric "err") for the tests, so that they share its compilations."""
    return trainer(metrics={"err": err})


def draw(key, step):
    """A batch function: random inputs, the target their running sum (plus the step, so steps differ)."""
    x = jax.random.normal(key, (B, T))
    return {"src.out": x}, jnp.cumsum(x, axis=1) + step.astype(x.dtype) / 8


jdraw = jax.jit(draw)  # the tests' own draws, in one compilation


def host_batches(count, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(count, B, T)).astype(np.float32)
    return [({"src.out": x}, np.cumsum(x, axis=1)) for x in xs]


def W(state):
    return np.asarray(state.params["W"]["number"])


def test_fit_with_an_iterator_equals_a_hand_loop_of_updates():
    tr = shared()
    batches = host_batches(7)
    st, losses = tr.init(), []
    for i, d in batches:
        st, me = tr.update(st, i, d)
        losses.append(float(me.loss))
    for chunk in (1, 3):  # chunk 3: pairs pulled and stacked for one scan (3 + 3), then the last one alone
        got, hist = tr.fit(tr.init(), 7, batches=iter(batches), chunk=chunk, progress=False)
        np.testing.assert_allclose(hist["loss"], losses, rtol=1e-6)
        np.testing.assert_allclose(W(got), W(st), rtol=1e-6, atol=1e-7)
        assert int(got.step) == 7
    # a list is an iterable too; one that ends early ends training
    got, hist = tr.fit(tr.init(), 20, batches=batches, chunk=3, progress=False)
    assert len(hist["loss"]) == 7 and int(got.step) == 7
    np.testing.assert_allclose(W(got), W(st), rtol=1e-6, atol=1e-7)


def test_batch_function_chunked_equals_step_by_step_and_a_hand_loop():
    tr = shared()
    fn = dmm.train.BatchFn(draw)
    st = tr.init(key=jax.random.key(3))
    a, ha = tr.fit(st, 7, batches=fn, progress=False)
    b, hb = tr.fit(st, 7, batches=fn, chunk=3, progress=False)  # two scans of 3, then a single step
    for f in ha:
        assert np.array_equal(ha[f], hb[f]), f
    assert np.array_equal(W(a), W(b))
    # the documented key derivation, by hand
    hand, losses = st, []
    for s in range(7):
        i, d = jdraw(jax.random.fold_in(jax.random.fold_in(st.key, dmm.train.loop.BATCH_STREAM), s), jnp.int32(s))
        hand, me = tr.update(hand, i, d)
        losses.append(float(me.loss))
    np.testing.assert_allclose(ha["loss"], losses, rtol=1e-6)
    np.testing.assert_allclose(W(a), W(hand), rtol=1e-6, atol=1e-7)
    # deterministic per key: a plain callable is a batch function as well
    c, hc = tr.fit(tr.init(key=jax.random.key(3)), 7, batches=draw, progress=False)
    d, hd = tr.fit(tr.init(key=jax.random.key(4)), 7, batches=draw, progress=False)
    assert np.array_equal(hc["loss"], ha["loss"]) and np.array_equal(W(c), W(a))
    assert not np.array_equal(hd["loss"], ha["loss"])
    assert len(set(ha["loss"].tolist())) == 7


def test_held_out_evaluation_at_every_k_steps_equals_evaluate(tmp_path):
    tr = shared()
    batches = host_batches(8, seed=1)
    (ei, ed), = host_batches(1, seed=2)
    out, log = io.StringIO(), tmp_path / "m.jsonl"
    st, hist = tr.fit(tr.init(), 8, batches=batches, chunk=3, eval_every=3, eval_batch=(ei, ed), progress=True,
                      stream=out, log=log)
    assert hist["eval_step"].tolist() == [3, 6]
    assert set(hist) == {"loss", "penalty", "grad_norm", "links", "eval_step", "eval_loss", "eval_err"}
    # the states at steps 3 and 6 by hand, and their evaluation on the held-out batch
    hand, want_loss, want_err = tr.init(), [], []
    m = tr.machine
    for s, (i, d) in enumerate(batches, 1):
        hand, _ = tr.update(hand, i, d)
        if s % 3 == 0:
            want_loss.append(float(tr.evaluate(hand, ei, ed).loss))
            # the metric independently: each held-out sequence run alone with the state's parameters
            ys = [np.asarray(m.run(T, inputs={"src.out": x}, params=hand.params, record=["out.y"])["out.y"])
                  for x in ei["src.out"]]
            want_err.append(np.mean([np.mean(np.abs(y - t)) for y, t in zip(ys, ed)]))
            assert tr.measure(hand, ei, ed) == pytest.approx({"loss": want_loss[-1], "err": want_err[-1]}, rel=1e-6)
    np.testing.assert_allclose(hist["eval_loss"], want_loss, rtol=1e-6)
    np.testing.assert_allclose(hist["eval_err"], want_err, rtol=1e-5)
    # the log: one line per step, and an evaluation line after steps 3 and 6
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 3, 4, 5, 6, 6, 7, 8]
    ev = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in ev] == [3, 6] and all("loss" not in r for r in ev)
    assert [r["eval_loss"] for r in ev] == pytest.approx(want_loss, rel=1e-6)
    assert [r["eval_err"] for r in ev] == pytest.approx(hist["eval_err"].tolist())
    assert [r["loss"] for r in rows if "loss" in r] == pytest.approx(hist["loss"].tolist())
    # the progress bar shows the latest evaluation
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("step 8/8") and f"eval_loss {hist['eval_loss'][-1]:.3e}" in last and "eval_err" in last


def test_evaluation_batch_from_a_function_of_a_key():
    tr = shared()
    fn = dmm.train.BatchFn(draw)
    key = jax.random.key(9)
    evals = lambda k: jdraw(k, jnp.int32(0))
    st, hist = tr.fit(tr.init(), 6, batches=fn, chunk=3, eval_every=3, eval_batch=evals, eval_key=key, progress=False)
    ei, ed = evals(key)
    hand = tr.init()
    for s in range(6):
        hand, _ = tr.update(hand, *jdraw(dmm.train.BatchFn.key(hand.key, s), jnp.int32(s)))
    assert hist["eval_step"].tolist() == [3, 6]
    assert hist["eval_loss"][-1] == pytest.approx(float(tr.evaluate(hand, ei, ed).loss), rel=1e-6)
    # the default key is derived from the state's key, so a rerun evaluates on the same batch
    _, h1 = tr.fit(tr.init(), 3, batches=fn, chunk=3, eval_every=3, eval_batch=evals, progress=False)
    _, h2 = tr.fit(tr.init(), 3, batches=fn, chunk=3, eval_every=3, eval_batch=evals, progress=False)
    assert np.array_equal(h1["eval_loss"], h2["eval_loss"])


def test_bad_batch_sources_and_evaluations_are_rejected():
    tr = shared()
    (i, d), = host_batches(1)
    with pytest.raises(dmm.ProgramError, match="not both"):
        tr.fit(tr.init(), 2, i, d, batches=draw, progress=False)
    with pytest.raises(dmm.ProgramError, match="not both"):
        tr.fit(tr.init(), 2, data=d, batches=[(i, d)], progress=False)
    with pytest.raises(dmm.ProgramError, match="eval_every needs an eval_batch"):
        tr.fit(tr.init(), 2, i, d, eval_every=1, progress=False)
    with pytest.raises(dmm.ProgramError, match="eval_batch needs eval_every"):
        tr.fit(tr.init(), 2, i, d, eval_batch=(i, d), progress=False)
    with pytest.raises(dmm.ProgramError, match="batches must be"):
        tr.fit(tr.init(), 2, batches=3, progress=False)
    with pytest.raises(dmm.ProgramError, match="pairs"):
        tr.fit(tr.init(), 2, batches=[i], progress=False)
    with pytest.raises(dmm.ProgramError, match="BatchFn"):
        dmm.train.BatchFn(3)
    with pytest.raises(dmm.ProgramError, match="metric name"):
        trainer(metrics={"loss": err})
    with pytest.raises(dmm.ProgramError, match="batched"):
        dmm.train.Trainer(machine(), loss, optax.sgd(0.1), T, devices=jax.devices())
    with pytest.raises(dmm.ProgramError, match="jax.Device"):
        trainer(devices=[])


def test_the_guard_names_the_failing_step_of_a_stream():
    tr = shared()
    batches = host_batches(5, seed=3)
    batches[2][0]["src.out"][1, 2] = np.nan  # the third step's batch
    with pytest.raises(dmm.NonFiniteError, match="training step 3: stream 'src.out'") as info:
        tr.fit(tr.init(), 5, batches=batches, chunk=3, progress=False)
    assert int(info.value.state.step) == 2
    hand = tr.init()
    for i, d in batches[:2]:
        hand, _ = tr.update(hand, i, d)
    assert np.array_equal(W(info.value.state), W(hand))

    def poisoned(key, step):
        i, d = draw(key, step)
        return {"src.out": jnp.where(step == 4, jnp.nan, i["src.out"])}, d

    with pytest.raises(dmm.NonFiniteError, match="training step 5: stream 'src.out'") as info:
        tr.fit(tr.init(), 6, batches=poisoned, chunk=3, progress=False)
    assert int(info.value.state.step) == 4
