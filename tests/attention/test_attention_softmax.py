"""Softmax attention neurons on streams and on matrix streams (attention/softmax.py)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmm
import neurons
from attention import (
    attention,
    attention_weights,
    dot_product_attention,
    matrix_attention,
)


def np_softmax(u):
    e = np.exp(u - u.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def matrix_program(q_kind, k_kind=None, v_kind=None, **config):
    p = dmm.Program()
    p.add("q", neurons.external(q_kind))
    p.add("k", neurons.external(k_kind or q_kind))
    p.add("v", neurons.external(v_kind or k_kind or q_kind))
    p.add("att", matrix_attention(q_kind, k_kind, v_kind, **config))
    for s in "qkv":
        p.link(f"{s}.out", f"att.{s}", 1.0)
    return p


def run_matrix(p, dtype, data, key=None):
    """Feed data[s] (steps, L, d) to the sources; the attention output at cycle c + 1 uses the data of cycle c.
    `p` is a program or a compiled machine."""
    m = p if isinstance(p, dmm.Machine) else dmm.compile(p, dtype=dtype)
    steps = data["q"].shape[0] + 1
    inputs = {f"{s}.out": jnp.concatenate([data[s], data[s][:1]]) for s in "qkv"}
    return m.run(steps, inputs=inputs, record=["att.out"], key=key)["att.out"][1:]


@pytest.mark.parametrize("heads,causal,lq,lk", [(2, False, 5, 9), (8, True, 16, 16)])
def test_matrix_attention_equals_jax_dot_product_attention_float32(heads, causal, lq, lk):
    rng = np.random.default_rng(1)
    d = dv = 16  # jax.nn.dot_product_attention needs equal key and value widths
    qk, kk, vk = dmm.Kind("qs", (lq, d)), dmm.Kind("ks", (lk, d)), dmm.Kind("vs", (lk, dv))
    out = dmm.Kind("os", (lq, dv))
    p = matrix_program(qk, kk, vk, out_kind=out if lq != lk else None, heads=heads, causal=causal)
    data = {"q": rng.normal(size=(3, lq, d)).astype(np.float32) * 2,
            "k": rng.normal(size=(3, lk, d)).astype(np.float32) * 2,
            "v": rng.normal(size=(3, lk, dv)).astype(np.float32)}
    got = run_matrix(p, jnp.float32, data)
    split = lambda a, w: a.reshape(*a.shape[:2], heads, w // heads)
    ref = jax.nn.dot_product_attention(split(data["q"], d), split(data["k"], d), split(data["v"], dv), is_causal=causal)
    ref = np.asarray(ref).reshape(3, lq, dv)
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def np_attention(q, k, v, heads, causal):
    """Float64 NumPy multi-head attention (the textbook formula, computed independently)."""
    L, d = q.shape
    dh = d // heads
    out = np.zeros((L, v.shape[1]))
    dvh = v.shape[1] // heads
    for h in range(heads):
        s = q[:, h * dh : (h + 1) * dh] @ k[:, h * dh : (h + 1) * dh].T / np.sqrt(dh)
        if causal:
            s = np.where(np.tril(np.ones((L, L), bool)), s, -np.inf)
        out[:, h * dvh : (h + 1) * dvh] = np_softmax(s) @ v[:, h * dvh : (h + 1) * dvh]
    return out


def test_matrix_attention_equals_jax_dot_product_attention_float64(x64):
    """Float64: equal to a float64 NumPy reference within 1e-12. `jax.nn.dot_product_attention` itself rounds its
    softmax to float32 (its XLA path casts the logits to float32), so in float64 it agrees only to ~1e-7."""
    rng = np.random.default_rng(2)
    L, d, heads = 10, 12, 3
    kind = dmm.Kind("seq", (L, d))
    data = {s: rng.normal(size=(2, L, d)) for s in "qkv"}
    got = run_matrix(matrix_program(kind, heads=heads, causal=True), jnp.float64, data)
    assert got.dtype == np.float64
    ref = np.stack([np_attention(*(np.asarray(data[s][i]) for s in "qkv"), heads, True) for i in range(2)])
    assert np.abs(got - ref).max() <= 1e-12 * np.abs(ref).max()
    r = lambda a: a.reshape(2, L, heads, d // heads)
    with jax.numpy_dtype_promotion("standard"):  # jax's own function mixes its float32 softmax with float64 inputs
        ref_jax = np.asarray(jax.nn.dot_product_attention(r(data["q"]), r(data["k"]), r(data["v"]), is_causal=True))
    assert np.abs(got - ref_jax.reshape(2, L, d)).max() <= 1e-6 * np.abs(ref).max()


def test_matrix_attention_is_stable_for_huge_logits():
    rng = np.random.default_rng(3)
    q = rng.normal(size=(6, 4)).astype(np.float32) * 300
    k = rng.normal(size=(6, 4)).astype(np.float32) * 300
    v = rng.normal(size=(6, 4)).astype(np.float32)
    y = dot_product_attention(q, k, v, causal=True)
    assert np.all(np.isfinite(y))
    logits = np.asarray(q, np.float64) @ np.asarray(k, np.float64).T / 2
    logits[np.triu_indices(6, 1)] = -np.inf
    np.testing.assert_allclose(y, np_softmax(logits) @ np.asarray(v), atol=1e-4)


def test_matrix_attention_with_another_mechanism():
    rng = np.random.default_rng(4)
    kind, wide = dmm.Kind("seq", (6, 4)), dmm.Kind("wide", (6, 8))
    data = {"q": rng.normal(size=(2, 6, 4)).astype(np.float32), "k": rng.normal(size=(2, 6, 4)).astype(np.float32),
            "v": rng.normal(size=(2, 6, 8)).astype(np.float32)}
    m = dmm.compile(matrix_program(kind, kind, wide, mechanism="race", options={"cycles": 8}, causal=True))
    with pytest.raises(dmm.ProgramError, match="stochastic"):
        m.run(2)
    a = run_matrix(m, jnp.float32, data, key=jax.random.key(1))
    b = run_matrix(m, jnp.float32, data, key=jax.random.key(1))
    np.testing.assert_array_equal(a, b)  # same key, same trace
    # each output row is a mixture of value rows with weights in {0, 1/8, ..., 1}, only over the causal past
    v = np.asarray(data["v"][0], np.float64)
    w = np.linalg.lstsq(v.T, np.asarray(a[0], np.float64).T, rcond=None)[0].T  # (L, L) weights
    np.testing.assert_allclose(w * 8, np.round(w * 8), atol=1e-3)
    assert np.allclose(np.triu(w, 1), 0, atol=1e-3) and np.allclose(w.sum(1), 1, atol=1e-3)


def test_matrix_attention_rejects_bad_shapes():
    q = dmm.Kind("qs", (4, 6))
    with pytest.raises(dmm.ProgramError, match="heads"):
        matrix_attention(q, heads=4)
    with pytest.raises(dmm.ProgramError, match="shapes do not fit"):
        matrix_attention(q, dmm.Kind("ks", (4, 5)))
    with pytest.raises(dmm.ProgramError, match="give out_kind"):
        matrix_attention(q, dmm.Kind("ks", (3, 6)))
    with pytest.raises(dmm.ProgramError, match="2 dimension"):
        matrix_attention(dmm.Kind("vec", (6,)))


def test_pair_attention_follows_the_network_matrix():
    """W chooses what is attended to: the keys and values are whatever W routes to k_j, v_j."""
    rng = np.random.default_rng(5)
    kk, vk = dmm.Kind("key", (4,)), dmm.Kind("val", (3,))
    src = {f"s{i}": np.asarray(rng.normal(size=(4,)).astype(np.float32)) for i in range(3)}
    val = {f"w{i}": np.asarray(rng.normal(size=(3,)).astype(np.float32)) for i in range(3)}
    p = dmm.Program()
    for name, x in src.items():
        p.add(name, neurons.const(x, kk))
    for name, x in val.items():
        p.add(name, neurons.const(x, vk))
    p.add("att", attention(kk, vk, n=2, scale=0.7))
    p.link("s0.out", "att.q", 1.0)
    p.link("s1.out", "att.k1", 2.0)
    p.link("s2.out", "att.k2", 1.0)
    p.link("s1.out", "att.k2", -0.5)
    p.link("w0.out", "att.v1", 1.0)
    p.link("w1.out", "att.v2", 1.0)
    p.link("w2.out", "att.v2", 1.0)
    m = dmm.compile(p)
    y = m.run(2, record=["att.out"])["att.out"][1]
    k1, k2 = 2 * src["s1"], src["s2"] - 0.5 * src["s1"]
    w = np_softmax(0.7 * np.array([src["s0"] @ k1, src["s0"] @ k2]))
    np.testing.assert_allclose(y, w[0] * val["w0"] + w[1] * (val["w1"] + val["w2"]), rtol=1e-5)
    # gradients reach the routing weights
    g = jax.grad(lambda params: m.run(2, params=params, record=["att.out"])["att.out"][1].sum())(m.params)
    assert np.abs(np.asarray(g["W"]["key"])).sum() > 0


def test_pair_attention_config_errors():
    with pytest.raises(dmm.ProgramError, match="n must be"):
        attention(dmm.Kind("key", (2,)), dmm.Kind("val", (2,)), n=0)
    with pytest.raises(dmm.ProgramError, match="unknown attention mechanism"):
        attention(dmm.Kind("key", (2,)), dmm.Kind("val", (2,)), mechanism="hopfield")


@pytest.mark.parametrize("mech,options", [("softmax", {}), ("rate", {"steps": 200}), ("oscillator", {"steps": 400, "offset": 1e-4})])
def test_weights_neuron_is_a_drop_in_for_softmax(mech, options):
    kind = dmm.Kind("cands", (5,))
    s = np.array([0.3, -1.0, 1.2, 0.0, 0.7], np.float32)
    p = dmm.Program()
    p.add("s", neurons.const(s, kind))
    p.add("w", attention_weights(kind, scale=1.5, mechanism=mech, options=options))
    p.link("s.out", "w.scores", 1.0)
    w = dmm.compile(p).run(2, record=["w.weights"])["w.weights"][1]
    np.testing.assert_allclose(w, np_softmax(1.5 * s.astype(np.float64)), atol=2e-3 if mech == "oscillator" else 1e-5)


@pytest.mark.parametrize("precision", ["default", "highest"])
def test_neuron_matmuls_follow_the_machine_precision(precision):
    # on GPUs/TPUs the default float32 matmul may round to TF32/bfloat16: the machine's precision reaches the
    # attention neuron's own products as well as the down movement
    kind = dmm.Kind("qs", (4, 8))
    m = dmm.compile(matrix_program(kind, heads=2), precision=precision)
    data = {f"{s}.out": jnp.ones((2, 4, 8)) for s in "qkv"}
    jaxpr = jax.make_jaxpr(lambda p: m.run(2, params=p, inputs=data, record=["att.out"])["att.out"])(m.params)

    text = str(jaxpr)  # includes the scan body and the vmapped neuron functions
    found = re.findall(r"dot_general\[.*?precision=(\S+)", text, flags=re.S)
    want = f"(Precision.{precision.upper()},"
    assert len(found) >= 3  # the down movement and the neuron's score and value products
    assert all(p == want for p in found), found
