"""The layer vocabulary (`neurons.layers`): every type run through `dmm.compile(...).run(...)` against a NumPy
formula with the same parameters, in both forms (token (d,) and sequence (L, d)), plus the init schemes, the
argument checks and a gradient against float64 central differences."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dmm
import neurons
from helpers import neuron_param, with_neuron_param
from neurons.layers import dense_type

L, D_IN, D_OUT, V = 4, 3, 5, 7
VEC_IN, VEC_OUT = dmm.Kind("vin", (D_IN,)), dmm.Kind("vout", (D_OUT,))
SEQ_IN, SEQ_OUT = dmm.Kind("sin", (L, D_IN)), dmm.Kind("sout", (L, D_OUT))
TOL = {jnp.float32: {"rtol": 1e-5, "atol": 1e-5}, jnp.float64: {"rtol": 1e-12, "atol": 1e-12}}


def run_layers(layers, feeds, dtype=jnp.float32, steps=2):
    """Run `layers` ({name: (neuron, {port: source name})}) fed by external sources `feeds` ({name: (kind, values
    (≤ steps, *shape))}); returns the trace (every layer's output at cycle c reads the sources' values of c − 1)."""
    p = dmm.Program()
    for name, (kind, _) in feeds.items():
        p.add(name, neurons.external(kind))
    for name, (neuron, wiring) in layers.items():
        p.add(name, neuron)
        for port, src in wiring.items():
            p.link(f"{src}.out", f"{name}.{port}", 1.0)
    m = dmm.compile(p, dtype=dtype)
    inputs = {}
    for n, (kind, v) in feeds.items():  # rows past the given ones are zeros
        v = np.asarray(v, np.dtype(dtype))
        inputs[f"{n}.out"] = np.concatenate([v, np.zeros((steps - len(v), *kind.shape), v.dtype)])
    return m.run(steps, inputs=inputs, record=[f"{n}.out" for n in layers])


def rng_values(rng, shape, steps=2):
    return rng.normal(size=(steps, *shape))


# ---------------------------------------------------------------------------------------------------------- dense


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_dense_both_forms_match_numpy_and_each_other(dtype):
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(D_IN, D_OUT)), rng.normal(size=D_OUT)
    xs = rng_values(rng, (L, D_IN))
    rows = np.stack([xs[:, i] for i in range(L)])  # token form: row i of the sequence, one neuron per row
    feeds = {"seq": (SEQ_IN, xs), **{f"tok{i}": (VEC_IN, rows[i]) for i in range(L)}}
    layers = {"d": (neurons.dense(SEQ_IN, SEQ_OUT, weight=w, bias=b), {"in": "seq"}),
              "nb": (neurons.dense(SEQ_IN, SEQ_OUT, weight=w, use_bias=False), {"in": "seq"}),
              **{f"v{i}": (neurons.dense(VEC_IN, VEC_OUT, weight=w, bias=b), {"in": f"tok{i}"}) for i in range(L)}}
    with jax.enable_x64(dtype == jnp.float64):
        t = run_layers(layers, feeds, dtype)
    x = xs[0].astype(np.dtype(dtype)).astype(np.float64)
    np.testing.assert_allclose(t.at("d.out", 2), x @ w + b, **TOL[dtype])
    np.testing.assert_allclose(t.at("nb.out", 2), x @ w, **TOL[dtype])
    for i in range(L):
        np.testing.assert_array_equal(t.at(f"v{i}.out", 2), t.at("d.out", 2)[i])


def test_dense_parameters_and_init():
    n = neurons.dense(SEQ_IN, SEQ_OUT, key=jax.random.key(1))
    assert set(n.params) == {"weight", "bias"} and n.type.trainable == {"weight", "bias"}
    assert n.params["weight"].shape == (D_IN, D_OUT) and not n.params["bias"].any()
    assert set(neurons.dense(VEC_IN, VEC_OUT, use_bias=False).params) == {"weight"}
    assert not neurons.dense(VEC_IN, VEC_OUT).params["weight"].any()  # neither weight nor key: zeros
    # normal, std 1/sqrt(d_in), deterministic per key, in float32 whether or not x64 is on
    big_in, big_out = dmm.Kind("big_in", (256,)), dmm.Kind("big_out", (200,))
    w = neurons.dense(big_in, big_out, key=jax.random.key(2)).params["weight"]
    assert abs(w.std() * math.sqrt(256) - 1) < 0.03 and abs(w.mean()) < 3 / math.sqrt(256 * 200 * 256)
    with jax.enable_x64(True):
        again = neurons.dense(big_in, big_out, key=jax.random.key(2)).params["weight"]
    np.testing.assert_array_equal(again, w)
    other = neurons.dense(big_in, big_out, key=jax.random.key(3)).params["weight"]
    assert not np.allclose(other, w)


def test_dense_bad_arguments_name_the_kinds():
    with pytest.raises(dmm.ProgramError, match=r"in_kind Kind\('sin', \(4, 3\)\) and out_kind Kind\('o', \(3, 5\)\)"):
        neurons.dense(SEQ_IN, dmm.Kind("o", (3, 5)))
    with pytest.raises(dmm.ProgramError, match="in_kind Kind.*'vin'.*out_kind Kind.*'sout'"):
        neurons.dense(VEC_IN, SEQ_OUT)
    with pytest.raises(dmm.ProgramError, match="'dense'.*in_kind must be a vector kind"):
        neurons.dense(dmm.NUMBER, VEC_OUT)
    with pytest.raises(dmm.ProgramError, match="'dense'.*out_kind must be a vector kind"):
        neurons.dense(VEC_IN, dmm.Kind("cube", (2, 2, 2)))
    with pytest.raises(dmm.ProgramError, match="'dense': in_kind must be a dmm.Kind"):
        dense_type((3,), VEC_OUT)
    with pytest.raises(dmm.ProgramError, match="use_bias=False"):
        neurons.dense(VEC_IN, VEC_OUT, bias=np.zeros(D_OUT), use_bias=False)
    with pytest.raises(dmm.ProgramError, match="'weight' must have shape \\(3, 5\\)"):
        neurons.dense(VEC_IN, VEC_OUT, weight=np.zeros((5, 3)))


# ------------------------------------------------------------------------------------------------------ embedding


def test_embedding_from_ids_and_one_hots_in_both_forms():
    rng = np.random.default_rng(3)
    table = rng.normal(size=(V, D_OUT))
    ids = np.array([[3, 0, 6, -100], [1, 7, 2, 5]], np.float64)  # -100 and 7 (= V) are out of range
    onehot = rng.normal(size=(2, L, V))  # any weights, not only one-hots: y = x · table
    tok_ids = ids[:, 2]
    feeds = {"ids": (neurons.ids_kind(L), ids), "tid": (dmm.NUMBER, tok_ids),
             "oh": (dmm.Kind("oh", (L, V)), onehot), "toh": (dmm.Kind("toh", (V,)), onehot[:, 1])}
    layers = {"seq": (neurons.embedding(V, SEQ_OUT, table=table), {"in": "ids"}),
              "tok": (neurons.embedding(V, VEC_OUT, table=table), {"in": "tid"}),
              "seq_oh": (neurons.embedding(V, SEQ_OUT, in_kind=dmm.Kind("oh", (L, V)), table=table), {"in": "oh"}),
              "tok_oh": (neurons.embedding(V, VEC_OUT, in_kind=dmm.Kind("toh", (V,)), table=table), {"in": "toh"})}
    t = run_layers(layers, feeds, steps=3)
    for c, row in ((2, 0), (3, 1)):
        want = np.stack([table[int(i)] if 0 <= i < V else np.zeros(D_OUT) for i in ids[row]])
        np.testing.assert_allclose(t.at("seq.out", c), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(t.at("tok.out", c), t.at("seq.out", c)[2])
        np.testing.assert_allclose(t.at("seq_oh.out", c), onehot[row] @ table, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(t.at("tok_oh.out", c), t.at("seq_oh.out", c)[1], rtol=1e-6, atol=1e-6)
    assert not t.at("seq.out", 2)[3].any() and not t.at("seq.out", 3)[1].any()  # out of range: zero rows


def test_embedding_ids_round_and_nonfinite_ids_give_zeros():
    table = np.arange(V * 2, dtype=np.float64).reshape(V, 2) + 1
    ids = np.array([[2.4, 2.6, -0.6, 6.4, np.nan, np.inf, -np.inf]])
    kind = neurons.ids_kind(7)
    t = run_layers({"e": (neurons.embedding(V, dmm.Kind("e7", (7, 2)), table=table), {"in": "ids"})},
                   {"ids": (kind, np.concatenate([ids, ids]))})
    want = np.stack([table[2], table[3], np.zeros(2), table[6], np.zeros(2), np.zeros(2), np.zeros(2)])
    np.testing.assert_array_equal(t.at("e.out", 2), want)


def test_embedding_init_and_bad_kinds():
    big = neurons.embedding(500, dmm.Kind("d64", (64,)), key=jax.random.key(4))
    table = big.params["table"]
    assert table.shape == (500, 64) and abs(table.std() / 0.02 - 1) < 0.03 and abs(table.mean()) < 1e-3
    np.testing.assert_array_equal(neurons.embedding(500, dmm.Kind("d64", (64,)), key=jax.random.key(4)).params["table"],
                                  table)
    assert abs(neurons.embedding(500, dmm.Kind("d64", (64,)), key=jax.random.key(4), std=1.0).params["table"].std() - 1) < 0.03
    assert big.type.port("in").kind == dmm.NUMBER
    assert neurons.embedding(V, SEQ_OUT).type.port("in").kind == dmm.Kind("ids_4", (4,))
    with pytest.raises(dmm.ProgramError, match=r"in_kind Kind\('x', \(5,\)\) does not fit out_kind Kind\('sout'.*vocab 7"):
        neurons.embedding(V, SEQ_OUT, in_kind=dmm.Kind("x", (5,)))
    with pytest.raises(dmm.ProgramError, match="'embedding': vocab must be a positive integer"):
        neurons.embedding(0, VEC_OUT)
    with pytest.raises(dmm.ProgramError, match="std must be a positive number"):
        neurons.embedding(V, VEC_OUT, key=jax.random.key(0), std=-1.0)
    with pytest.raises(dmm.ProgramError, match="out_kind must be a vector kind"):
        neurons.embedding(V, dmm.NUMBER)


# ---------------------------------------------------------------------------------------------- position embedding


def test_position_embedding_token_form_at_position_t_is_row_t_of_the_sequence_form():
    rng = np.random.default_rng(5)
    table = rng.normal(size=(L, D_OUT))
    steps = L + 3
    xs = rng.normal(size=(steps, L, D_OUT))
    toks = rng.normal(size=(steps, D_OUT))
    seq_kind = dmm.Kind("sout", (L, D_OUT))
    # the source is fed at cycle c and the neuron sees it at c + 1: start = 3 puts position 0 at cycle 3
    p = dmm.Program()
    p.add("xs", neurons.external(seq_kind))
    p.add("tok", neurons.external(VEC_OUT))
    p.add("seq", neurons.position_embedding(seq_kind, table=table))
    p.add("cyc", neurons.position_embedding(VEC_OUT, max_len=L, start=3, table=table))
    p.add("clock", neurons.accumulator())  # outputs c - 1 at cycle c: "port" sees position c - 2 at cycle c
    p.add("one", neurons.const(1.0))
    p.add("port", neurons.position_embedding(VEC_OUT, max_len=L, table=table))
    p.link("xs.out", "seq.in")
    p.link("tok.out", "cyc.in")
    p.link("tok.out", "port.in")
    p.link("one.out", "clock.delta")
    p.link("clock.out", "clock.accum")
    p.link("clock.out", "port.position", 1.0)
    m = dmm.compile(p)
    t = m.run(steps, inputs={"xs.out": xs.astype(np.float32), "tok.out": toks.astype(np.float32)},
              record=["seq.out", "cyc.out", "port.out", "port.position", "cyc.in"])
    np.testing.assert_allclose(t.at("seq.out", 2), xs[0] + table, rtol=1e-6, atol=1e-6)
    for c in range(1, steps + 1):
        pos = c - 3
        x = t.at("cyc.in", c)
        if 0 <= pos < L:
            np.testing.assert_allclose(t.at("cyc.out", c), x + table[pos], rtol=1e-6, atol=1e-6)
            # the same as row `pos` of the sequence form fed the same row
            seq_row = (t.at("seq.out", 2) - xs[0].astype(np.float32))[pos]
            np.testing.assert_allclose(t.at("cyc.out", c) - x, seq_row, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(t.at("cyc.out", c), x)  # outside [0, max_len): adds nothing
        q = int(t.at("port.position", c))
        want = x + table[q] if 0 <= q < L else x
        np.testing.assert_allclose(t.at("port.out", c), want, rtol=1e-6, atol=1e-6)


def test_position_embedding_arguments():
    assert neurons.position_embedding(VEC_OUT, max_len=9, start=1).params["table"].shape == (9, D_OUT)
    assert [q.name for q in neurons.position_embedding(VEC_OUT, max_len=9).type.inputs] == ["in", "position"]
    drawn = neurons.position_embedding(SEQ_OUT, key=jax.random.key(6)).params["table"]
    assert drawn.shape == (L, D_OUT) and drawn.any()
    with pytest.raises(dmm.ProgramError, match="token form on Kind\\('vout'.*needs max_len"):
        neurons.position_embedding(VEC_OUT, start=1)
    with pytest.raises(dmm.ProgramError, match="sequence form on Kind\\('sout'.*has max_len 4, not 5"):
        neurons.position_embedding(SEQ_OUT, max_len=5)
    with pytest.raises(dmm.ProgramError, match="sequence form .* takes no start"):
        neurons.position_embedding(SEQ_OUT, start=2)
    with pytest.raises(dmm.ProgramError, match="start must be an integer cycle"):
        neurons.position_embedding(VEC_OUT, max_len=3, start=1.5)
    with pytest.raises(dmm.ProgramError, match="'table' must have shape \\(3, 5\\)"):
        neurons.position_embedding(VEC_OUT, max_len=3, start=1, table=np.zeros((4, 5)))


# ------------------------------------------------------------------------------------------------- normalisations


def np_layer_norm(x, scale, offset, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + offset


def np_rms_norm(x, scale, eps):
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * scale


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_norms_match_numpy_in_both_forms(dtype):
    rng = np.random.default_rng(7)
    kind, vec = dmm.Kind("s", (L, D_OUT)), dmm.Kind("v", (D_OUT,))
    scale, offset = rng.normal(size=D_OUT), rng.normal(size=D_OUT)
    xs = 3 * rng_values(rng, (L, D_OUT))
    feeds = {"x": (kind, xs), "r": (vec, xs[:, 1])}
    layers = {
        "ln": (neurons.layer_norm(kind, scale=scale, offset=offset), {"in": "x"}),
        "ln_v": (neurons.layer_norm(vec, scale=scale, offset=offset), {"in": "r"}),
        "ln_bare": (neurons.layer_norm(kind, eps=0.1, use_scale=False, use_offset=False), {"in": "x"}),
        "rms": (neurons.rms_norm(kind, scale=scale), {"in": "x"}),
        "rms_v": (neurons.rms_norm(vec, scale=scale), {"in": "r"}),
        "rms_bare": (neurons.rms_norm(kind, eps=0.5, use_scale=False), {"in": "x"}),
    }
    with jax.enable_x64(dtype == jnp.float64):
        t = run_layers(layers, feeds, dtype)
    x = xs[0].astype(np.dtype(dtype)).astype(np.float64)
    tol = TOL[dtype]
    np.testing.assert_allclose(t.at("ln.out", 2), np_layer_norm(x, scale, offset, 1e-5), **tol)
    np.testing.assert_allclose(t.at("ln_bare.out", 2), np_layer_norm(x, 1.0, 0.0, 0.1), **tol)
    np.testing.assert_allclose(t.at("rms.out", 2), np_rms_norm(x, scale, 1e-6), **tol)
    np.testing.assert_allclose(t.at("rms_bare.out", 2), np_rms_norm(x, 1.0, 0.5), **tol)
    np.testing.assert_array_equal(t.at("ln_v.out", 2), t.at("ln.out", 2)[1])
    np.testing.assert_array_equal(t.at("rms_v.out", 2), t.at("rms.out", 2)[1])


def test_layer_norm_is_stable_under_a_large_common_offset():
    """Two passes (mean first): 1e4 + N(0, 1) in float32 still normalises to within float32's input rounding (a
    one-pass E[x²] − E[x]² would lose the variance entirely)."""
    rng = np.random.default_rng(8)
    kind = dmm.Kind("wide", (64,))
    x = (1e4 + rng.normal(size=(2, 64))).astype(np.float32)
    t = run_layers({"ln": (neurons.layer_norm(kind), {"in": "x"})}, {"x": (kind, x)})
    want = np_layer_norm(x[0].astype(np.float64), 1.0, 0.0, 1e-5)
    np.testing.assert_allclose(t.at("ln.out", 2), want, atol=5e-3)


def test_norm_parameters_and_errors():
    n = neurons.layer_norm(VEC_OUT)
    np.testing.assert_array_equal(n.params["scale"], np.ones(D_OUT))
    np.testing.assert_array_equal(n.params["offset"], np.zeros(D_OUT))
    assert n.type.trainable == {"scale", "offset"}
    assert set(neurons.layer_norm(VEC_OUT, use_offset=False).params) == {"scale"}
    assert neurons.rms_norm(VEC_OUT, use_scale=False).params == {}
    with pytest.raises(dmm.ProgramError, match="'layer_norm': eps must be"):
        neurons.layer_norm(VEC_OUT, eps=-1.0)
    with pytest.raises(dmm.ProgramError, match="'rms_norm': kind must be a vector kind"):
        neurons.rms_norm(dmm.NUMBER)
    with pytest.raises(dmm.ProgramError, match="layer_norm: offset given with use_offset=False"):
        neurons.layer_norm(VEC_OUT, use_offset=False, offset=np.zeros(D_OUT))


# ---------------------------------------------------------------------------------------- activations and shift


def test_gelu_and_silu_match_their_formulas():
    rng = np.random.default_rng(9)
    kind = dmm.Kind("s", (L, D_OUT))
    xs = 3 * rng_values(rng, (L, D_OUT))
    layers = {"g": (neurons.gelu(kind), {"in": "x"}), "ge": (neurons.gelu(kind, approximate=False), {"in": "x"}),
              "s": (neurons.silu(kind), {"in": "x"}), "gn": (neurons.gelu(), {"in": "n"})}
    t = run_layers(layers, {"x": (kind, xs), "n": (dmm.NUMBER, xs[:, 0, 0])})
    x = xs[0].astype(np.float32).astype(np.float64)
    tanh_form = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    erf_form = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    np.testing.assert_allclose(t.at("g.out", 2), tanh_form, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t.at("ge.out", 2), erf_form, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t.at("s.out", 2), x / (1 + np.exp(-x)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t.at("gn.out", 2), tanh_form[0, 0], rtol=1e-5, atol=1e-5)
    # the default is jax.nn.gelu's
    np.testing.assert_allclose(t.at("g.out", 2), np.asarray(jax.nn.gelu(jnp.asarray(xs[0], jnp.float32))), rtol=1e-6)
    with pytest.raises(dmm.ProgramError, match="'gelu': approximate must be True or False"):
        neurons.gelu(kind, approximate="tanh")
    with pytest.raises(dmm.ProgramError, match="'silu': kind must be a dmm.Kind"):
        neurons.silu("s")


def test_causal_shift():
    rng = np.random.default_rng(10)
    kind, vec = dmm.Kind("s", (L, D_OUT)), dmm.Kind("v", (D_OUT,))
    xs = rng_values(rng, (L, D_OUT), steps=3)
    layers = {"sh": (neurons.causal_shift(kind, fill=-2.5), {"in": "x"}), "tok": (neurons.causal_shift(vec), {"in": "r"})}
    t = run_layers(layers, {"x": (kind, xs), "r": (vec, xs[:, 0])}, steps=3)
    x = xs[1].astype(np.float32)
    want = np.concatenate([np.full((1, D_OUT), -2.5, np.float32), x[:-1]])
    np.testing.assert_array_equal(t.at("sh.out", 3), want)
    np.testing.assert_array_equal(t.at("tok.out", 3), x[0])  # the token form: identity, one cycle later
    with pytest.raises(dmm.ProgramError, match="'causal_shift': kind must have at most 2 dimensions"):
        neurons.causal_shift(dmm.Kind("cube", (2, 2, 2)))


# --------------------------------------------------------------------------------------------- invariants, gradient


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_sequence_forms_act_row_by_row(length, d_in, d_out, seed):
    """Permuting the input rows permutes the output rows of dense → layer_norm → gelu, and the result matches a
    NumPy formula for every shape."""
    rng = np.random.default_rng(seed)
    k_in, k_out = dmm.Kind(f"i{length}x{d_in}", (length, d_in)), dmm.Kind(f"o{length}x{d_out}", (length, d_out))
    perm = rng.permutation(length)
    xs = rng.normal(size=(2, length, d_in))
    w, b = rng.normal(size=(d_in, d_out)), rng.normal(size=d_out)
    layers = {}
    for name, src in (("a", "x"), ("b", "px")):
        layers[f"d{name}"] = (neurons.dense(k_in, k_out, weight=w, bias=b), {"in": src})
        layers[f"n{name}"] = (neurons.layer_norm(k_out), {"in": f"d{name}"})
    t = run_layers(layers, {"x": (k_in, xs), "px": (k_in, xs[:, perm])}, steps=3)
    np.testing.assert_allclose(t.at("nb.out", 3), t.at("na.out", 3)[perm], rtol=1e-5, atol=1e-5)
    x = xs[0].astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(t.at("na.out", 3), np_layer_norm(x @ w + b, 1.0, 0.0, 1e-5), rtol=1e-4, atol=1e-4)


def test_gradient_through_dense_and_layer_norm_matches_central_differences(x64):
    rng = np.random.default_rng(11)
    k_in, k_out = dmm.Kind("gi", (3, 2)), dmm.Kind("go", (3, 4))
    p = dmm.Program()
    p.add("x", neurons.const(rng.normal(size=(3, 2)), k_in))
    p.add("d", neurons.dense(k_in, k_out, weight=rng.normal(size=(2, 4)), bias=rng.normal(size=4)))
    p.add("ln", neurons.layer_norm(k_out, scale=rng.normal(size=4), offset=rng.normal(size=4)))
    p.add("y", neurons.rms_norm(k_out, scale=rng.normal(size=4)))
    p.link("x.out", "d.in")
    p.link("d.out", "ln.in")
    p.link("ln.out", "y.in")
    m = dmm.compile(p, dtype=jnp.float64)
    target = jnp.asarray(rng.normal(size=(3, 4)))

    @jax.jit
    def loss(params):
        out = m.run(5, params=params, record=["y.out"])["y.out"][-1]
        return jnp.sum((out - target) ** 2) + jnp.sum(jnp.sin(out))

    grad = jax.grad(loss)(m.params)
    h = 1e-6
    for neuron, name in (("d", "weight"), ("d", "bias"), ("ln", "scale"), ("ln", "offset"), ("y", "scale")):
        value = np.asarray(neuron_param(m, None, neuron, name))
        g = np.asarray(neuron_param(m, grad, neuron, name))
        for idx in np.ndindex(value.shape):
            up, down = value.copy(), value.copy()
            up[idx] += h
            down[idx] -= h
            fd = (float(loss(with_neuron_param(m, None, neuron, name, up))) - float(loss(with_neuron_param(m, None, neuron, name, down)))) / (2 * h)
            assert g[idx] == pytest.approx(fd, rel=1e-6, abs=1e-8), (neuron, name, idx)


def test_every_layer_round_trips_through_a_program_file(tmp_path):
    import dmm.files

    seq, vec = dmm.Kind("s", (L, D_OUT)), dmm.Kind("v", (D_OUT,))
    p = dmm.Program()
    key = iter(jax.random.split(jax.random.key(12), 8))
    p.add("ids", neurons.external(neurons.ids_kind(L)))
    p.add("emb", neurons.embedding(V, seq, key=next(key)))
    p.add("pos", neurons.position_embedding(seq, key=next(key)))
    p.add("ln", neurons.layer_norm(seq, eps=1e-4, use_offset=False))
    p.add("up", neurons.dense(seq, SEQ_OUT, key=next(key), use_bias=False))
    p.add("g", neurons.gelu(SEQ_OUT, approximate=False))
    p.add("s", neurons.silu(SEQ_OUT))
    p.add("rms", neurons.rms_norm(SEQ_OUT))
    p.add("sh", neurons.causal_shift(SEQ_OUT, fill=1.5))
    p.add("tok", neurons.position_embedding(vec, max_len=3, start=2, key=next(key)))
    p.add("tp", neurons.position_embedding(vec, max_len=3, key=next(key)))
    for src, dst in (("ids", "emb"), ("emb", "pos"), ("pos", "ln"), ("ln", "up"), ("up", "g"), ("g", "s"),
                     ("s", "rms"), ("rms", "sh")):
        p.link(f"{src}.out", f"{dst}.in")
    back = dmm.files.load_program(dmm.files.save_program(p, tmp_path / "layers"))
    assert back == p
    ids = np.random.default_rng(13).integers(0, V, size=(9, L)).astype(np.float32)
    a, b = (dmm.compile(q).run(9, inputs={"ids.out": ids}, record=["sh.out"])["sh.out"] for q in (p, back))
    assert np.abs(a[-1, 1:]).min() > 0  # the chain delivered
    np.testing.assert_array_equal(a, b)
