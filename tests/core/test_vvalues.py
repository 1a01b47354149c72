"""V-values: the conformance vectors of `docs/semantics.md` §3.5 (Clojure engine and JAX port), the flat form, and
V-values in and out of a running program."""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmm
import neurons
from dmm import vvalues as vv


T = {"a": 1, "b": 2, "c": {"a": 1, "b": 2, "c": {"x": 1, "y": 3}}}
A = {"a": 2, "b": 3, "c": 2.5}
F = {"a": 2, "b": 3, "c": {":number": 6, "u": 1}}
MATRIX = {"x": {"a": 8}, "y": {"b": 10}, "z": {"a": 2, "b": 4}}


# ---------------------------------------------------------------------------------- Clojure engine (core_test.clj)
@pytest.mark.parametrize(
    "got, expected",
    [
        (lambda: vv.mult_mask(T, T), {"a": 1, "b": 4, "c": {"a": 1, "b": 4, "c": {"x": 1, "y": 9}}}),
        (lambda: vv.mult_mask({"c": 7}, T), {"c": {"a": 7, "b": 14, "c": {"x": 7, "y": 21}}}),
        (lambda: vv.lin_comb({"c": 7}, {"c": 7}), {":number": 49}),
        (lambda: vv.lin_comb({"c": 7}, T), {"a": 7, "b": 14, "c": {"x": 7, "y": 21}}),
        (lambda: vv.lin_comb(T, T), {":number": 20}),
        (lambda: vv.lin_comb(T, {"c": 7}), {}),
        (
            lambda: vv.apply_matrix(MATRIX, {"a": 3.0, "b": 5}, 1),
            {"x": {":number": 24.0}, "y": {":number": 50}, "z": {":number": 26.0}},
        ),
        (
            lambda: vv.apply_matrix(MATRIX, {"a": {"v": 3}, "b": {"v": 5, "w": {"v": 8}}}, 1),
            {"x": {"v": 24}, "y": {"v": 50, "w": {"v": 80}}, "z": {"v": 26, "w": {"v": 32}}},
        ),
        (lambda: vv.max_norm({}), {":number": 0}),
        (lambda: vv.max_norm({"c": -2, "a": 1}), {":number": 2}),
    ],
    ids=["mult_mask(T,T)", "mult_mask(c7,T)", "lin_comb(c7,c7)", "lin_comb(c7,T)", "lin_comb(T,T)",
         "lin_comb(T,c7)", "apply_matrix_numbers", "apply_matrix_trees", "max_norm({})", "max_norm"],
)
def test_clojure_vectors(got, expected):
    result = got()
    assert vv.equal(result, expected), (result, expected)
    assert vv.pruned(result) == vv.pruned(expected)


def test_clojure_accum_neuron():
    def accum(x):  # the Clojure engine's accumulator: {single: sum(accum, delta)}
        return {"single": vv.sum(x["accum"], x["delta"])}

    got = accum({"accum": vv.lin_comb({"c": 7}, T), "delta": vv.lin_comb({"c": 1}, T)})
    assert vv.equal(got, {"single": {"a": 8, "b": 16, "c": {"x": 8, "y": 24}}})


@pytest.mark.parametrize("left, right, expected", [(2, 1, False), (1, 2, True), (1, 1, True), (0, 0, True)])
def test_clojure_less_or_equal(left, right, expected):
    assert vv.less_or_equal(left, right) is expected


def _iterate(value, ops, n):
    for i in range(n):
        value = ops[i % len(ops)](value)
    return value


def test_clojure_iterated_mult_add():
    got = _iterate(T, [lambda v: vv.scale(v, 2), lambda v: vv.add(v, 3)], 9)
    assert got == {"a": 122, "b": 154, "c": {"a": 122, "b": 154, "c": {"x": 122, "y": 186}}}


def test_clojure_iterated_mult_add_div_exact():
    got = _iterate(T, [lambda v: vv.scale(v, 2), lambda v: vv.add(v, 3), lambda v: vv.div(v, Fraction(7))], 9)
    a, b, y = Fraction(209, 343), Fraction(31, 49), Fraction(225, 343)
    assert got == {"a": a, "b": b, "c": {"a": a, "b": b, "c": {"x": a, "y": y}}}
    assert all(isinstance(x, Fraction) for _, x in vv.leaves(got))


# -------------------------------------------------------------------------------- JAX port (immutable_ops.py)
def test_sfx_vectors_tree():
    assert vv.equal(vv.lin_comb(A, A), 19.25)
    assert vv.equal(vv.lin_comb(F, F), 50)
    assert vv.equal(vv.lin_comb(A, F), {":number": 28, "u": 2.5})
    assert vv.equal(vv.lin_comb(F, A), 13)


def test_sfx_vectors_flat():
    """The flat back end matches the same-shape vectors: lin-comb of one kind is the dot product."""
    for v, expected in ((A, 19.25), (F, 50.0)):
        kind = vv.keyed_kind("k", v)
        x = vv.flatten(kind, v)
        assert float(np.dot(x, x)) == expected


def test_lin_comb_gradient_flat():
    kind = vv.keyed_kind("f", F)
    x = jnp.asarray(vv.flatten(kind, F), jnp.float32)
    grad = jax.grad(lambda x: jnp.dot(x, x))(x)
    assert vv.equal(vv.unflatten(kind, np.asarray(grad)), {"a": 4, "b": 6, "c": {":number": 12, "u": 2}})


def test_lin_comb_gradient_tree():
    """The tree functions are plain arithmetic on leaves, so jax.grad runs through them too."""
    f = jax.tree_util.tree_map(jnp.float32, F)
    grad = jax.grad(lambda f: vv.lin_comb(f, f)[":number"])(f)
    assert vv.equal(jax.tree_util.tree_map(float, grad), {"a": 4, "b": 6, "c": {":number": 12, "u": 2}})


def test_apply_matrix_is_the_flat_down_movement():
    """Every down-movement case of the tree algebra equals X = W·Y in flat form."""
    rows, cols = ("x", "y", "z"), ("a", "b")
    col_kind = dmm.Kind.keyed("cols", cols)
    W = np.stack([vv.flatten(col_kind, MATRIX[r]) for r in rows])
    for outputs in ({"a": 3.0, "b": 5}, {"a": {"v": 3}, "b": {"v": 5, "w": {"v": 8}}}):
        kind = vv.keyed_kind("stream", *[outputs[c] for c in cols])
        Y = np.stack([np.atleast_1d(vv.flatten(kind, outputs[c])) for c in cols])
        X = W @ Y
        flat = {r: vv.unflatten(kind, X[i]) for i, r in enumerate(rows)}
        assert vv.equal(flat, vv.apply_matrix(MATRIX, outputs, 1))


# ------------------------------------------------------------------------------------------------- algebra
def test_sum_moves_leaf_under_number():
    assert vv.sum({"c": 2}, {"c": {"u": 1}}) == {"c": {":number": 2, "u": 1}}
    assert vv.sum(3, {"a": 1}) == {":number": 3, "a": 1}
    assert vv.sum({"a": 1}, {"a": -1}) == {"a": 0}  # zeros are kept ...
    assert vv.pruned(vv.sum({"a": 1}, {"a": -1})) == {}  # ... and dropped by the pruned view


def test_sum_does_not_alias_its_arguments():
    a, b = {"c": {"x": 1}}, {"d": {"y": 2}}
    s = vv.sum(a, b)
    s["d"]["y"] = 5
    assert b == {"d": {"y": 2}}


def test_pruned_and_equal():
    assert vv.pruned({"a": 0, "b": {"c": 0.0, "d": {}}, "e": 1}) == {"e": 1}
    assert vv.equal({":number": 4}, 4) and vv.equal(0, {}) and not vv.equal({"a": 1}, {"a": 2})
    assert vv.equal({"a": 1.0}, {"a": 1.0 + 1e-9}, tol=1e-6)
    assert vv.less_or_equal({"a": 1}, {"a": 1, "b": 2}) and not vv.less_or_equal({"a": 1, "b": 2}, {"a": 1})


def test_bad_values_are_rejected():
    with pytest.raises(dmm.DMMError, match="neither a number nor a map"):
        vv.lin_comb({"a": "x"}, {"a": 1})
    with pytest.raises(dmm.DMMError, match="':number' key must hold a number"):
        vv.key_table({"a": {":number": {"b": 1}}})
    with pytest.raises(dmm.DMMError, match="map of rows"):
        vv.apply_matrix({"x": 1}, {"a": 1}, 2)


# ----------------------------------------------------------------------------------------------- flat form
def test_key_table_and_flatten_roundtrip():
    kind = vv.keyed_kind("k", A, F)
    assert kind.keys == (("a",), ("b",), ("c", ":number"), ("c", "u"))
    # a scalar at a node with children goes under ":number"; both spellings flatten alike
    np.testing.assert_array_equal(vv.flatten(kind, A), [2, 3, 2.5, 0])
    np.testing.assert_array_equal(vv.flatten(kind, F), [2, 3, 6, 1])
    assert vv.unflatten(kind, vv.flatten(kind, A)) == {"a": 2.0, "b": 3.0, "c": {":number": 2.5, "u": 0.0}}
    assert vv.equal(vv.unflatten(kind, vv.flatten(kind, F)), F)


def test_flatten_leaf_table_accepts_number_key():
    kind = dmm.Kind.keyed("k", ["a", "c"])
    np.testing.assert_array_equal(vv.flatten(kind, {"c": {":number": 6}, "a": 1}), [1, 6])


def test_flatten_rejects_nonzero_leaf_outside_table():
    kind = dmm.Kind.keyed("k", ["a", "b"])
    np.testing.assert_array_equal(vv.flatten(kind, {"a": 1, "z": 0.0}), [1, 0])  # zero leaves may be anywhere
    with pytest.raises(dmm.ProgramError, match=r"nonzero leaf z/w = 2.*kind 'k'"):
        vv.flatten(kind, {"a": 1, "z": {"w": 2}})
    with pytest.raises(dmm.ProgramError, match="no key table"):
        vv.flatten(dmm.Kind("vec", (2,)), {"a": 1})


def test_number_kind():
    assert vv.flatten(dmm.NUMBER, 3.5) == 3.5
    assert vv.flatten(dmm.NUMBER, {":number": 2}) == 2
    assert vv.unflatten(dmm.NUMBER, np.float32(1.5)) == {":number": 1.5}
    assert vv.keyed_kind("n", 1, 2).keys == ((":number",),)


def test_flatten_traced_leaves():
    kind = dmm.Kind.keyed("k", ["a", "b"])
    grad = jax.grad(lambda s: jnp.sum(vv.flatten(kind, {"a": s, "b": 2 * s}, jnp.float32) ** 2))(jnp.float32(1.0))
    assert float(grad) == 10.0  # d/ds (s² + 4s²)


def test_network_entries_roundtrip():
    value = {"self": {"delta": {"update-1": {"out": -1.0}, "update-2": {"out": 1.0}}}}
    entries = vv.network_entries(value)
    assert entries == {("update-1.out", "self.delta"): -1.0, ("update-2.out", "self.delta"): 1.0}
    assert vv.network_value(entries) == value
    with pytest.raises(dmm.ProgramError, match="not a"):
        vv.network_entries({"self": {"delta": 1.0}})


# ------------------------------------------------------------------------------------ V-values and programs
def test_program_with_named_keys_and_trace_as_vvalues():
    """Write a program with V-values, run it flat, read its trace back as V-values."""
    kind = vv.keyed_kind("counts", {"step": 1}, {"a": {"x": 1, "y": 1}})
    p = dmm.Program()
    p.add("src", neurons.const(vv.flatten(kind, {"step": 1, "a": {"y": 0.5}}), kind))
    p.add("acc", neurons.accumulator(kind), initial={"out": vv.flatten(kind, {"a": {"x": 3}})})
    p.link("acc.out", "acc.accum")
    p.link("src.out", "acc.delta", 2.0)
    trace = dmm.compile(p).run(3)
    got = vv.from_trace(trace, "acc.out")
    expected = [vv.sum({"a": {"x": 3}}, vv.scale({"step": 1, "a": {"y": 0.5}}, 2 * c)) for c in (0, 1, 2)]
    assert all(vv.equal(g, e) for g, e in zip(got, expected))
    assert got[0] == {"step": 0.0, "a": {"x": 3.0, "y": 0.0}}  # full trees with explicit zeros
