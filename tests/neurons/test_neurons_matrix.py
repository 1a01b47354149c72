"""The matrix neuron F(L(A)·R(X) + Y) against a NumPy reference, with gradients against central differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmm
import neurons
from neurons.matrix import matrix_kind


def softmax(z, axis):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


F = {"identity": lambda z: z, "relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
     "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "sin": np.sin}


def reference(a, x, y, activation, left, right, include_identity):
    if include_identity:
        a = np.concatenate([a, np.eye(a.shape[0])], axis=1)
        x = np.concatenate([x, y], axis=0)
        y = 0.0
    if left == "softmax":
        a = softmax(a, 1)
    if right == "softmax":
        x = softmax(x, 0)
    return F[activation](a @ x + y)


def program(m, k, n, rng, **config):
    p = dmm.Program()
    p.add("A", neurons.const(rng.normal(size=(m, k)), matrix_kind(m, k)))
    p.add("X", neurons.const(rng.normal(size=(k, n)), matrix_kind(k, n)))
    p.add("Y", neurons.const(rng.normal(size=(m, n)), matrix_kind(m, n)))
    p.add("mm", neurons.matrix_neuron(m, k, n, **config))
    for s in "AXY":
        p.link(f"{s}.out", f"mm.{s.lower()}", 1.0)
    return p


CONFIGS = [dict(activation=f, left="none", right="none", include_identity=False) for f in F if f != "tanh"] + [
    dict(activation="tanh", left=left, right=right, include_identity=ident)
    for left in ("none", "softmax")
    for right in ("none", "softmax")
    for ident in (False, True)
]


def test_matrix_neuron_matches_numpy():
    """Every activation, and every normalisation and identity option, as neuron types of one program."""
    rng = np.random.default_rng(0)
    p = program(2, 3, 4, rng, **CONFIGS[0])
    for i, config in enumerate(CONFIGS[1:], start=1):
        p.add(f"mm{i}", neurons.matrix_neuron(2, 3, 4, **config))
        for s in "AXY":
            p.link(f"{s}.out", f"mm{i}.{s.lower()}", 1.0)
    trace = dmm.compile(p).run(2, record="all")
    a, x, y = (np.asarray(trace.at(f"{s}.out", 1), np.float64) for s in "AXY")
    for i, config in enumerate(CONFIGS):
        got = trace.at(f"mm{i}.out" if i else "mm.out", 2)
        assert got.shape == (2, 4)
        np.testing.assert_allclose(got, reference(a, x, y, **config), rtol=2e-6, atol=1e-6, err_msg=str(config))


def test_include_identity_is_the_plain_neuron_without_normalisation():
    rng = np.random.default_rng(1)
    plain = dmm.compile(program(3, 2, 2, rng)).run(2)["mm.out"]
    rng = np.random.default_rng(1)
    ident = dmm.compile(program(3, 2, 2, rng, include_identity=True)).run(2)["mm.out"]
    np.testing.assert_allclose(ident, plain, rtol=1e-6, atol=1e-7)


def test_softmax_rows_and_columns_are_convex():
    """With both factors normalised and Y = 0, every output entry lies between the min and max of X's column."""
    rng = np.random.default_rng(2)
    p = program(3, 4, 2, rng, left="softmax")
    trace = dmm.compile(p).run(2, record=["mm.out", "mm.x", "mm.y"])
    out = trace.at("mm.out", 2) - trace.at("mm.y", 2)
    x = trace.at("mm.x", 2)
    assert np.all(out >= x.min(axis=0) - 1e-6) and np.all(out <= x.max(axis=0) + 1e-6)


def test_matrix_neuron_gradient(x64):
    rng = np.random.default_rng(3)
    m = dmm.compile(program(2, 3, 2, rng, activation="tanh", left="softmax", right="softmax", include_identity=True),
                    dtype=jnp.float64)

    def loss(params):
        return jnp.sum(m.run(3, params=params, record=["mm.out"])["mm.out"] ** 2)

    grad = jax.grad(loss)(m.params)
    for k in ("matrix2x3", "matrix3x2", "matrix2x2"):
        w = m.params["W"][k]
        i, j = np.argwhere(np.asarray(w) != 0)[0]

        def f(t, k=k, i=i, j=j):
            return float(loss({**m.params, "W": {**m.params["W"], k: w.at[i, j].set(t)}}))

        h = 1e-6
        numeric = (f(float(w[i, j]) + h) - f(float(w[i, j]) - h)) / (2 * h)
        np.testing.assert_allclose(grad["W"][k][i, j], numeric, rtol=1e-6)


def test_bad_configuration():
    with pytest.raises(dmm.ProgramError, match="activation must be one of"):
        neurons.matrix_neuron(2, 2, 2, activation="gelu")
    with pytest.raises(dmm.ProgramError, match="left normalisation"):
        neurons.matrix_neuron(2, 2, 2, left="l1")
    p = dmm.Program()
    p.add("A", neurons.const(np.ones((2, 3)), matrix_kind(2, 3)))
    p.add("mm", neurons.matrix_neuron(3, 2, 2))
    with pytest.raises(dmm.ProgramError, match="joins kind 'matrix2x3' to kind 'matrix3x2'"):
        p.link("A.out", "mm.a")
