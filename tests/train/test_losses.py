"""`dmm.train` losses: masked cross-entropy and accuracy against NumPy formulas, their gradients against the closed
form (softmax − one-hot), the empty mask, and the trace helpers on programs run through `dmm.compile`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmm
import dmm.train
import neurons
from helpers import neuron_param


def np_cross_entropy(logits, labels, weights):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    safe = np.where(weights != 0, labels, 0)
    ce = -np.take_along_axis(logp, safe[..., None], -1)[..., 0]
    return float((weights * ce).sum() / weights.sum())


def data(rng, shape=(3, 6), vocab=5, ignore=0.3):
    logits = rng.normal(size=(*shape, vocab)) * 3
    labels = rng.integers(0, vocab, size=shape)
    labels = np.where(rng.random(shape) < ignore, -100, labels)
    return logits, labels


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_and_accuracy_match_numpy(dtype):
    rng = np.random.default_rng(0)
    logits, labels = data(rng)
    weights = (labels >= 0).astype(np.float64)
    with jax.enable_x64(dtype == "float64"):
        lg, lb = jnp.asarray(logits, dtype), jnp.asarray(labels, jnp.int32)
        ce, acc = dmm.train.cross_entropy(lg, lb), dmm.train.accuracy(lg, lb)
        assert ce.dtype == jnp.dtype(dtype) and ce.shape == ()
        tol = 1e-12 if dtype == "float64" else 1e-5
        x = np.asarray(lg, np.float64)
        assert float(ce) == pytest.approx(np_cross_entropy(x, labels, weights), rel=tol)
        hits = (x.argmax(-1) == labels) & (labels >= 0)
        assert float(acc) == pytest.approx(hits.sum() / weights.sum(), rel=tol)
        # an explicit mask (bool or float weights) replaces labels >= 0
        keep = rng.random(labels.shape) < 0.5
        w = rng.random(labels.shape)
        clean = np.where(labels < 0, 1, labels)
        assert float(dmm.train.cross_entropy(lg, jnp.asarray(clean, jnp.int32), jnp.asarray(keep))) == pytest.approx(
            np_cross_entropy(x, clean, keep.astype(np.float64)), rel=tol)
        assert float(dmm.train.cross_entropy(lg, jnp.asarray(clean, jnp.int32), jnp.asarray(w, dtype))) == pytest.approx(
            np_cross_entropy(x, clean, np.asarray(jnp.asarray(w, dtype), np.float64)), rel=tol)
        per = dmm.train.per_position_cross_entropy(lg, lb)
        assert per.shape == labels.shape and not np.asarray(per)[labels < 0].any()
        assert float(per.sum() / weights.sum()) == pytest.approx(float(ce), rel=tol)


def test_gradient_is_softmax_minus_one_hot_and_finite_under_masking(x64):
    rng = np.random.default_rng(1)
    logits, labels = data(rng, ignore=0.4)
    logits[0, 0] = [1e4, -1e4, 0.0, 5e3, -3.0]  # huge logits stay finite (max-shifted log-softmax)
    labels[0, 0] = 1
    lg, lb = jnp.asarray(logits), jnp.asarray(labels)
    g = np.asarray(jax.grad(dmm.train.cross_entropy)(lg, lb))
    assert np.all(np.isfinite(g))
    on = labels >= 0
    z = np.exp(logits - logits.max(-1, keepdims=True))
    want = (z / z.sum(-1, keepdims=True) - np.eye(5)[np.where(on, labels, 0)]) * on[..., None] / on.sum()
    np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-15)
    assert not g[~on].any()  # ignored positions get no gradient


def test_an_empty_mask_gives_zero_loss_and_zero_gradient():
    lg = jnp.asarray(np.random.default_rng(2).normal(size=(4, 3)), jnp.float32)
    none = jnp.full((4,), -100, jnp.int32)
    for f in (dmm.train.cross_entropy, dmm.train.accuracy):
        assert float(f(lg, none)) == 0.0
        assert float(f(lg, jnp.zeros(4, jnp.int32), jnp.zeros(4, bool))) == 0.0
        g = jax.grad(f)(lg, none)
        assert np.all(np.asarray(g) == 0)
    assert float(jax.jit(dmm.train.cross_entropy)(lg, none)) == 0.0


def test_bad_arguments():
    lg = jnp.zeros((2, 3), jnp.float32)
    with pytest.raises(dmm.ProgramError, match=r"cross_entropy: logits of shape \(2, 3\) need labels of shape \(2,\)"):
        dmm.train.cross_entropy(lg, jnp.zeros((3,), jnp.int32))
    with pytest.raises(dmm.ProgramError, match="accuracy: labels must be integers"):
        dmm.train.accuracy(lg, jnp.zeros((2,), jnp.float32))
    with pytest.raises(dmm.ProgramError, match="logits must be floating"):
        dmm.train.cross_entropy(jnp.zeros((2, 3), jnp.int32), jnp.zeros((2,), jnp.int32))
    with pytest.raises(dmm.ProgramError, match=r"mask of shape \(3,\) does not match labels of shape \(2,\)"):
        dmm.train.cross_entropy(lg, jnp.zeros((2,), jnp.int32), jnp.ones(3, bool))
    # an unmasked label outside [0, V) is not silently scored
    assert np.isnan(float(dmm.train.cross_entropy(lg, jnp.asarray([0, 3], jnp.int32))))


def logits_program(vocab, d):
    """x (d,) -> dense -> logits (V,): the prediction for the token fed at cycle c arrives at cycle c + 1."""
    rng = np.random.default_rng(3)
    k_in, k_out = dmm.Kind("tok", (d,)), dmm.Kind("logits", (vocab,))
    p = dmm.Program()
    p.add("x", neurons.external(k_in))
    p.add("head", neurons.dense(k_in, k_out, weight=rng.normal(size=(d, vocab)), bias=rng.normal(size=vocab)))
    p.link("x.out", "head.in")
    return dmm.compile(p)


def test_trace_helpers_read_the_given_rows():
    vocab, d, steps = 6, 4, 8
    m = logits_program(vocab, d)
    rng = np.random.default_rng(4)
    xs = rng.normal(size=(steps, d)).astype(np.float32)
    labels = rng.integers(0, vocab, size=steps - 1)
    t = m.run(steps, inputs={"x.out": xs}, record=["head.out"])
    # the token fed in row r (cycle r + 1) is scored in row r + 1 (cycle r + 2)
    w, b = (np.asarray(neuron_param(m, None, "head", n), np.float64) for n in ("weight", "bias"))
    logits = xs[:-1].astype(np.float64) @ w + b
    lb = jnp.asarray(labels, jnp.int32)
    ce = dmm.train.trace_cross_entropy(t, "head.out", lb, rows=slice(1, None))
    assert float(ce) == pytest.approx(np_cross_entropy(logits, labels, np.ones(steps - 1)), rel=1e-5)
    acc = dmm.train.trace_accuracy(t, "head.out", lb, rows=np.arange(1, steps))
    assert float(acc) == pytest.approx(float(np.mean(logits.argmax(-1) == labels)))
    one = dmm.train.trace_cross_entropy(t, "head.out", lb[2], rows=3)
    assert float(one) == pytest.approx(np_cross_entropy(logits[2:3], labels[2:3], np.ones(1)), rel=1e-5)
    with pytest.raises(dmm.ProgramError, match="need labels of shape"):
        dmm.train.trace_cross_entropy(t, "head.out", lb, rows=slice(None))
    with pytest.raises(dmm.ProgramError, match="rows must be an int, a slice or integer indices"):
        dmm.train.trace_logits(t, "head.out", np.array([0.5]))
    # a BatchTrace: the rows are on axis 1
    batch = dmm.run_batch(m, steps, inputs={"x.out": np.stack([xs, 2 * xs])})
    both = jnp.stack([lb, lb])
    mask = jnp.asarray([[True] * (steps - 1), [False] * (steps - 1)])
    bce = dmm.train.trace_cross_entropy(batch, "head.out", both, rows=slice(1, None), mask=mask)
    assert float(bce) == pytest.approx(float(ce), rel=1e-6)


def test_gradient_of_a_trace_loss_equals_the_plain_jax_one():
    """jax.grad through `machine.run` of the trace cross-entropy is the gradient of the same loss written directly
    in JAX (logits = x · weight + bias at the scored rows), with ignored labels."""
    vocab, d, steps = 5, 3, 7
    m = logits_program(vocab, d)
    rng = np.random.default_rng(5)
    xs = jnp.asarray(rng.normal(size=(steps, d)), jnp.float32)
    labels = jnp.asarray(np.where(rng.random(steps - 1) < 0.3, -100, rng.integers(0, vocab, steps - 1)), jnp.int32)

    def through_machine(params):
        t = m.run(steps, params=params, inputs={"x.out": xs}, record=["head.out"])
        return dmm.train.trace_cross_entropy(t, "head.out", labels, rows=slice(1, None))

    def direct(w, b):
        return dmm.train.cross_entropy(xs[:-1] @ w + b, labels)

    g = jax.grad(through_machine)(m.params)
    w, b = neuron_param(m, None, "head", "weight"), neuron_param(m, None, "head", "bias")
    gw, gb = jax.grad(direct, argnums=(0, 1))(w, b)
    np.testing.assert_allclose(neuron_param(m, g, "head", "weight"), gw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(neuron_param(m, g, "head", "bias"), gb, rtol=1e-5, atol=1e-6)
    assert float(through_machine(m.params)) == pytest.approx(float(direct(w, b)), rel=1e-6)
