"""Linear attention, the delta-rule fast-weight programmer and the modern SRWM (attention/fastweights.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmm
import neurons
from attention import (
    add_with_state,
    delta_rule,
    dpfp,
    linear_attention,
    linear_matrix_attention,
    srwm,
    srwm_kind,
)
from attention import functional as F

KEY, VAL = dmm.Kind("key", (4,)), dmm.Kind("val", (3,))


def sequence_program(neuron, ports=("q", "k", "v"), kinds=(KEY, KEY, VAL)):
    p = dmm.Program()
    for s, kind in zip(ports, kinds):
        p.add(s, neurons.external(kind))
    add_with_state(p, "fw", neuron)
    for s in ports:
        p.link(f"{s}.out", f"fw.{s}", 1.0)
    return p


def run_sequence(p, data, dtype, record=("fw.q", "fw.k", "fw.v", "fw.out")):
    m = dmm.compile(p, dtype=dtype)
    steps = len(next(iter(data.values())))
    return m.run(steps, inputs={f"{s}.out": a for s, a in data.items()}, record=list(record))


def elu1_np(x):
    return np.where(x > 0, x + 1.0, np.exp(x))


def test_recurrent_linear_attention_equals_the_parallel_form(x64):
    """Token by token, the recurrent neuron (state [S | z] through W) equals parallel causal linear attention on
    the sequence of its inputs, and the matrix-stream neuron; all in float64."""
    rng = np.random.default_rng(1)
    T = 9
    data = {s: np.asarray(rng.normal(size=(T, 4 if s != "v" else 3))) for s in "qkv"}
    tr = run_sequence(sequence_program(linear_attention(KEY, VAL)), data, jnp.float64)
    q, k, v = (tr[f"fw.{s}"] for s in "qkv")
    par = np.asarray(F.linear_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)))
    np.testing.assert_allclose(tr["fw.out"], par, rtol=1e-12, atol=1e-12)
    # an independent NumPy evaluation of the same formula
    a = np.tril(elu1_np(q) @ elu1_np(k).T)
    np.testing.assert_allclose(par, (a @ v) / (a.sum(1, keepdims=True) + 1e-6), rtol=1e-12)
    # the matrix-stream neuron: the whole sequence as one (T, d) stream
    qk, vk = dmm.Kind("qs", (T, 4)), dmm.Kind("vs", (T, 3))
    p = dmm.Program()
    for s, kind in (("q", qk), ("k", qk), ("v", vk)):
        p.add(s, neurons.external(kind))
    p.add("lin", linear_matrix_attention(qk, vk))
    for s in "qkv":
        p.link(f"{s}.out", f"lin.{s}", 1.0)
    inputs = {"q.out": np.stack([q, q]), "k.out": np.stack([k, k]), "v.out": np.stack([v, v])}
    y = dmm.compile(p, dtype=jnp.float64).run(2, inputs=inputs, record=["lin.out"])["lin.out"][1]
    np.testing.assert_allclose(y, par, rtol=1e-12, atol=1e-12)


def test_delta_rule_matches_a_numpy_loop(x64):
    rng = np.random.default_rng(2)
    T = 7
    data = {s: np.asarray(rng.normal(size=(T, 4 if s != "v" else 3))) for s in "qkv"}
    data["beta"] = np.asarray(rng.normal(size=(T,)))
    p = sequence_program(delta_rule(KEY, VAL), ("q", "k", "v", "beta"), (KEY, KEY, VAL, dmm.NUMBER))
    tr = run_sequence(p, data, jnp.float64, ("fw.q", "fw.k", "fw.v", "fw.beta", "fw.out", "fw.state"))
    W = np.zeros((3, 4))
    for t in range(T):
        q, k, v, b = (tr[f"fw.{s}"][t] for s in ("q", "k", "v", "beta"))
        kh, qh = elu1_np(k) / elu1_np(k).sum(), elu1_np(q) / elu1_np(q).sum()
        W = W + 1 / (1 + np.exp(-b)) * np.outer(v - W @ kh, kh)
        np.testing.assert_allclose(tr["fw.out"][t], W @ qh, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(tr["fw.state"][-1], W, rtol=1e-12, atol=1e-14)


def test_delta_rule_overwrites_where_the_sum_rule_adds():
    """One-hot keys, identity features, σ(β) ≈ 1: writing key a twice keeps only the second value."""
    e = np.eye(4, dtype=np.float32)
    v1, v2 = np.array([1.0, 0, 0], np.float32), np.array([0, 1.0, 0], np.float32)
    fast = jnp.zeros((3, 4))
    for v in (v1, v2):
        fast, _ = F.delta_rule_step(fast, e[0], e[0], v, jnp.asarray(30.0), phi=lambda x: x)
    np.testing.assert_allclose(fast @ e[0], v2, atol=1e-6)
    state = jnp.zeros((4, 4))
    for v in (v1, v2):
        state, y = F.linear_attention_step(state, e[0], e[0], v, phi=lambda x: x)
    np.testing.assert_allclose(y, (v1 + v2) / 2, atol=1e-5)


def test_srwm_matches_a_numpy_loop_and_its_gradient(x64):
    rng = np.random.default_rng(3)
    T, d, d_out = 6, 5, 2
    xk, yk = dmm.Kind("x", (d,)), dmm.Kind("y", (d_out,))
    for rates in (1, 4):
        neuron = srwm(xk, yk, rates, w0=rng.normal(size=srwm_kind(xk, yk, rates).shape) / np.sqrt(d))
        w0 = np.asarray(neuron.params["w0"], np.float64)
        assert w0.shape == srwm_kind(xk, yk, rates).shape == (d_out + 2 * d + rates, d)
        p = dmm.Program()
        p.add("x", neurons.external(xk))
        add_with_state(p, "fw", neuron)
        p.link("x.out", "fw.x", 1.0)
        m = dmm.compile(p, dtype=jnp.float64)
        xs = np.asarray(rng.normal(size=(T, d)))
        tr = m.run(T, inputs={"x.out": xs}, record=["fw.x", "fw.y"])

        def sm(a):
            e = np.exp(a - a.max())
            return e / e.sum()

        W = w0.copy()
        sizes = [d_out, d, d, rates]
        for t in range(T):
            x = tr["fw.x"][t]
            o = W @ x
            y, q, k, b = np.split(o, np.cumsum(sizes)[:-1])
            np.testing.assert_allclose(tr["fw.y"][t], y, rtol=1e-11, atol=1e-13)
            lr = 1 / (1 + np.exp(-b))
            lr = np.repeat(lr, sizes) if rates == 4 else np.full(len(o), lr[0])
            W = W + lr[:, None] * np.outer(W @ sm(q) - W @ sm(k), sm(k))

    # gradient of the outputs with respect to W_0 (a trainable neuron parameter) against central differences
    gid = m.layout.groups[[g.type.name for g in m.layout.groups].index("srwm")].id

    def loss(w0_flat):
        params = {**m.params, "neurons": {**m.params["neurons"], gid: {"w0": w0_flat.reshape(1, *w0.shape)}}}
        return jnp.sum(m.run(T, params=params, inputs={"x.out": xs}, record=["fw.y"])["fw.y"] ** 2)

    base = jnp.asarray(m.params["neurons"][gid]["w0"]).reshape(-1)
    g = np.asarray(jax.grad(loss)(base))
    assert m.trainable["neurons"][gid]["w0"].all()
    rng = np.random.default_rng(0)
    h = 1e-6
    for i in rng.choice(base.size, 6, replace=False):
        e = np.zeros(base.size)
        e[i] = h
        fd = float(loss(base + e) - loss(base - e)) / (2 * h)
        assert abs(g[i] - fd) < 1e-6 * max(1.0, abs(fd)), (i, g[i], fd)


def test_feature_maps_and_errors():
    x = jnp.array([1.0, -2.0, 0.5])
    assert dpfp(x, 2).shape == (12,)
    np.testing.assert_allclose(dpfp(x, 1), np.array([1, 0, 0.5, 0, 2, 0]) * np.roll([1, 0, 0.5, 0, 2, 0], 1))
    with pytest.raises(dmm.ProgramError, match="unknown feature map"):
        linear_attention(KEY, VAL, feature="cosine")
    with pytest.raises(dmm.ProgramError, match="rates"):
        srwm(KEY, VAL, 3)
    t = delta_rule(KEY, VAL, feature="dpfp", nu=2)
    assert t.port("state").kind.shape == (3, 16)
