"""Superfluid neurons: y = Σ_k c_k·f_k(x) with the mixture c carried in the neuron's own stream."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmm
import dmm.files
import neurons
from dmm import vvalues as vv


def mixed(mixture: dict, a_in=0.5, b_in=-1.0):
    """Sources a, b feed a superfluid accumulator/max neuron whose function stream loops back with weight 1."""
    sf = neurons.superfluid({"accum": neurons.accumulator(), "max": neurons.maximum()})
    fkind = sf.type.port("function").kind
    p = dmm.Program()
    p.add("a", neurons.const(a_in))
    p.add("b", neurons.const(b_in))
    p.add("n", sf, initial={"function_out": vv.flatten(fkind, mixture)})
    p.link("n.function_out", "n.function", 1.0)
    p.link("n.out", "n.accum", 1.0)
    p.link("a.out", "n.delta")
    p.link("a.out", "n.a")
    p.link("b.out", "n.b")
    return p, fkind


def test_ports_and_kind():
    sf = neurons.superfluid({"accum": neurons.accumulator(), "max": neurons.maximum()})
    assert [q.name for q in sf.type.inputs] == ["function", "accum", "delta", "a", "b"]
    assert [q.name for q in sf.type.outputs] == ["function_out", "out"]
    assert sf.type.port("function").kind == neurons.mixture_kind(["accum", "max"])


def test_mixture_matches_numpy():
    c_acc, c_max = 0.7, 0.3
    p, fkind = mixed({"accum": c_acc, "max": c_max})
    trace = dmm.compile(p).run(10, record="all")
    np.testing.assert_allclose(trace["n.function_out"], np.tile([c_acc, c_max], (10, 1)))
    y, expected = 0.0, []
    for c in range(1, 11):
        a, b = (0.5, -1.0) if c >= 2 else (0.0, 0.0)
        y = c_acc * (y + a) + c_max * max(a, b)
        expected.append(y)
    np.testing.assert_allclose(trace["n.out"], expected, rtol=1e-6)


@pytest.mark.parametrize("label", ["accum", "max"])
def test_pure_mixture_is_the_component(label):
    """With a one-hot mixture the neuron is exactly its component."""
    p, _ = mixed({label: 1.0})
    got = dmm.compile(p).run(6)["n.out"]
    q = dmm.Program()
    q.add("a", neurons.const(0.5))
    q.add("b", neurons.const(-1.0))
    if label == "accum":
        q.add("n", neurons.accumulator())
        q.link("n.out", "n.accum")
        q.link("a.out", "n.delta")
    else:
        q.add("n", neurons.maximum())
        q.link("a.out", "n.a")
        q.link("b.out", "n.b")
    np.testing.assert_array_equal(got, dmm.compile(q).run(6)["n.out"])


def test_morphing_type_by_redirecting_the_function_stream():
    """A reader switches the mixture from accumulator to max at cycle 4: the neuron morphs its type."""
    p, fkind = mixed({"accum": 1.0})
    p.set_weight("n.function_out", "n.function", 0.0)
    p.add("switch", neurons.reader(fkind, {c: {"max": 1.0} for c in range(4, 9)}, default={"accum": 1.0}))
    p.link("switch.out", "n.function")
    trace = dmm.compile(p).run(8, record=["n.out", "n.function"])
    np.testing.assert_array_equal(trace["n.function"][:, 1], [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(trace["n.out"], [0.0, 0.5, 1.0, 1.5, 0.5, 0.5, 0.5, 0.5])


def test_gradient_with_respect_to_mixture(x64):
    """d loss / d c through 8 cycles, with c in the initial state (the mixture is a stream)."""
    p, fkind = mixed({"accum": 0.6, "max": 0.4})
    m = dmm.compile(p, dtype=jnp.float64)
    s0 = m.init_state()

    def loss(c):
        state = m.write(s0, "n.function_out", c)
        return jnp.sum(m.run(8, state=state, record=["n.out"])["n.out"] ** 2)

    c = jnp.asarray([0.6, 0.4])
    grad = jax.grad(loss)(c)
    h = 1e-6
    for i in range(2):
        e = jnp.zeros(2).at[i].set(h)
        np.testing.assert_allclose(grad[i], (loss(c + e) - loss(c - e)) / (2 * h), rtol=1e-6)


def test_component_parameters_are_prefixed_and_trainable():
    vec = dmm.Kind("vec", (2,))
    lin = neurons.linear(vec, vec, matrix=[[1.0, 2.0], [3.0, 4.0]])
    sf = neurons.superfluid({"lin": lin, "id": neurons.identity(vec)})
    assert sorted(sf.params) == ["lin/bias", "lin/matrix"]
    np.testing.assert_array_equal(sf.params["lin/matrix"], [[1, 2], [3, 4]])
    assert sf.type.trainable == {"lin/matrix", "lin/bias"}
    p = dmm.Program()
    p.add("x", neurons.const([1.0, -1.0], vec))
    p.add("n", sf, initial={"function_out": [0.5, 2.0]})
    p.link("n.function_out", "n.function")
    p.link("x.out", "n.in")
    m = dmm.compile(p)
    out = m.run(2)["n.out"][1]
    np.testing.assert_allclose(out, 0.5 * np.array([-1.0, -1.0]) + 2.0 * np.array([1.0, -1.0]))
    gid = next(g.id for g in m.layout.groups if g.members == ("n",))
    assert sorted(m.trainable["neurons"][gid]) == ["lin/bias", "lin/matrix"]
    assert all(bool(v.all()) for v in m.trainable["neurons"][gid].values())


def test_file_roundtrip(tmp_path):
    p, _ = mixed({"accum": 0.7, "max": 0.3})
    dmm.files.save_program(p, tmp_path / "sf")
    q = dmm.files.load_program(tmp_path / "sf")
    assert q == p
    np.testing.assert_array_equal(dmm.compile(q).run(5)["n.out"], dmm.compile(p).run(5)["n.out"])


def test_bad_components():
    vec = dmm.Kind("vec", (2,))
    with pytest.raises(dmm.ProgramError, match="port 'in' is an input of kind"):
        neurons.superfluid({"a": neurons.identity(), "b": neurons.identity(vec)})
    with pytest.raises(dmm.ProgramError, match="has role 'self'"):
        neurons.superfluid({"s": neurons.self_matrix()})
    with pytest.raises(dmm.ProgramError, match="bad component label"):
        neurons.superfluid({"a.b": neurons.identity()})
    with pytest.raises(dmm.ProgramError, match="at least one"):
        neurons.superfluid({})
