"""The plain-JAX Transformer baseline (benchmarks/plain_transformer.py): its forward pass equals an independent
float64 NumPy forward on a tiny model, and its AdamW training step lowers the loss."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from helpers import load_script

from attention import mqar

plain = load_script("benchmarks/plain_transformer.py", "plain_transformer")

V, L, D, H, LAYERS = 13, 7, 8, 2, 2


def _np_forward(p, tokens, heads):
    """The decoder written out in float64 NumPy, from the module docstring: tokens (L,) -> logits (L, V)."""
    f = lambda a: np.asarray(a, np.float64)

    def ln(q, x):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * f(q["scale"]) + f(q["offset"])

    def lin(q, x):
        return x @ f(q["weight"]) + f(q["bias"])

    def gelu(x):  # the tanh approximation
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    n = len(tokens)
    h = f(p["embed"]["token"])[tokens] + f(p["embed"]["position"])[:n]
    for lp in p["layers"]:
        x = ln(lp["ln1"], h)
        q, k, v = (lin(lp["attn"][m], x) for m in "qkv")
        c = x.shape[-1] // heads
        mixed = np.zeros_like(x)
        for hd in range(heads):
            cols = slice(hd * c, (hd + 1) * c)
            for i in range(n):  # position i attends to 0 … i
                s = q[i, cols] @ k[: i + 1, cols].T / math.sqrt(c)
                w = np.exp(s - s.max())
                mixed[i, cols] = (w / w.sum()) @ v[: i + 1, cols]
        h = h + lin(lp["attn"]["o"], mixed)
        h = h + lin(lp["mlp"]["down"], gelu(lin(lp["mlp"]["up"], ln(lp["ln2"], h))))
    return lin(p["readout"], ln(p["final_ln"], h))


def _params(seed):
    """`init`'s pytree with every leaf redrawn (scales, offsets and biases off their initial 1 and 0), so that every
    parameter counts in the comparison."""
    p = plain.init(jax.random.key(seed), vocab=V, length=L, d_model=D, heads=H, layers=LAYERS)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape) / math.sqrt(a.shape[0]), jnp.float32), p)


def _np_loss_accuracy(logits, labels):
    """Mean cross-entropy and accuracy over the positions with label ≥ 0 (float64 NumPy)."""
    mask = labels >= 0
    lab = np.where(mask, labels, 0)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, lab[..., None], -1)[..., 0]
    return ce[mask].mean(), ((logits.argmax(-1) == lab) & mask).sum() / mask.sum()


def test_forward_loss_and_accuracy_equal_numpy():
    p = _params(1)
    tokens, labels = mqar(jax.random.key(2), 3, vocab=V, length=L, pairs=1)
    evaluate = jax.jit(lambda p, t, y: (plain.forward(p, t, heads=H), plain.forward(p, t[:, :4], heads=H),
                                        plain.loss(p, t, y, heads=H), plain.accuracy(p, t, y, heads=H)))
    logits, short, value, acc = (np.asarray(a) for a in evaluate(p, tokens, labels))
    assert logits.shape == (3, L, V)
    expect = np.stack([_np_forward(p, np.asarray(t), H) for t in tokens])
    assert np.std(expect) > 0.1
    np.testing.assert_allclose(logits, expect, atol=2e-5, rtol=1e-4)
    # a prefix L' < L uses the first L' position rows, and causality makes its logits the prefix's
    np.testing.assert_allclose(short, expect[:, :4], atol=2e-5, rtol=1e-4)
    # only the labelled (query) positions count, labels −100 elsewhere
    ce, hits = _np_loss_accuracy(expect, np.asarray(labels))
    np.testing.assert_allclose(value, ce, rtol=1e-5)
    assert float(acc) == hits


def test_training_steps_lower_the_loss():
    p = plain.init(jax.random.key(5), vocab=V, length=L, d_model=D, heads=H, layers=1)
    tokens, labels = mqar(jax.random.key(6), 8, vocab=V, length=L, pairs=1)
    ce, _ = _np_loss_accuracy(np.stack([_np_forward(p, np.asarray(t), H) for t in tokens]), np.asarray(labels))
    opt = plain.optimizer(1e-2, 0, 0.1)
    step = jax.jit(plain.make_step(opt, heads=H))
    state = opt.init(p)
    values = []
    for _ in range(7):  # the step reports the loss before its update
        p, state, value = step(p, state, tokens, labels)
        values.append(float(value))
    np.testing.assert_allclose(values[0], ce, rtol=1e-5)
    assert values[-1] < values[0] - 0.05 and values == sorted(values, reverse=True)
