"""Down-movement backends behind one protocol: a new backend is one class plus its registration, and the compiler,
the cycle, weight addressing and densification use it without knowing it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmm
import neurons
from dmm.backends import Backend, Block, register_backend


class Transposed(Backend):
    """Stores W_K transposed (N x M) and multiplies with it: a backend the core has never seen."""

    name = "transposed-test"

    def layout(self, rows, cols, shape):
        return Block(self, shape, (rows, cols))

    def store(self, block, values, fill=0):
        values = np.asarray(values)
        out = np.full(block.shape[::-1], fill, dtype=values.dtype if values.size else np.asarray(fill).dtype)
        out[block.links[1], block.links[0]] = values
        return out

    def entries(self, block):
        cols, rows = np.indices(block.shape[::-1])
        return rows, cols

    def product(self, values, tables, y, precision):
        return jnp.matmul(values.T, y, precision=precision)

    def dense(self, values, block):
        return values.T


register_backend(Transposed())


def net() -> dmm.Program:
    rng = np.random.default_rng(3)
    vec = dmm.Kind("vec", (2,))
    p = dmm.Program()
    p.add("src", neurons.external(vec))
    for i in range(3):
        p.add(f"h{i}", neurons.tanh(vec))
    p.add("out", neurons.sink({"y": vec}))
    for i in range(3):
        p.link("src.out", f"h{i}.in", float(rng.normal()))
        p.link(f"h{(i + 1) % 3}.out", f"h{i}.in", float(rng.normal()))
        p.link(f"h{i}.out", "out.y", float(rng.normal()))
    return p


def test_a_registered_backend_runs_and_differentiates_like_dense():
    xs = np.random.default_rng(0).normal(size=(8, 2))
    dense, mine = dmm.compile(net()), dmm.compile(net(), backend="transposed-test")
    assert mine.backend["vec"] == "transposed-test" and mine.params["W"]["vec"].shape == (4, 4)
    np.testing.assert_allclose(mine.run(8, inputs={"src.out": xs})["out.y"], dense.run(8, inputs={"src.out": xs})["out.y"], rtol=1e-6)

    def loss(m):
        return lambda params: jnp.sum(m.run(8, params=params, inputs={"src.out": xs}, record=["out.y"])["out.y"] ** 2)

    gd = jax.grad(loss(dense))(dense.params)["W"]["vec"]
    gm = jax.grad(loss(mine))(mine.params)["W"]["vec"]
    np.testing.assert_allclose(gm.T, gd, rtol=1e-5, atol=1e-7)
    # weight addressing and densification go through the protocol
    assert mine.weight("h1.out", "h0.in") == pytest.approx(dense.weight("h1.out", "h0.in"))
    np.testing.assert_allclose(mine.matrices()["vec"], dense.matrices()["vec"])
    changed = mine.set_weights({("h1.out", "h0.in"): 0.25})
    assert mine.weight("h1.out", "h0.in", params=changed) == 0.25


def test_a_backend_object_can_be_passed_directly_and_names_are_checked():
    m = dmm.compile(net(), backend=dmm.backends.ELL)
    assert m.backend["vec"] == "sparse"
    with pytest.raises(dmm.ProgramError, match="transposed-test"):  # the error lists every registered backend
        dmm.compile(net(), backend="nope")
    with pytest.raises(dmm.ProgramError, match="already registered"):
        register_backend(type("Other", (Transposed,), {})())  # another type may not take a registered name


def test_a_remat_strategy_object_is_accepted_and_changes_no_value():
    class Twice(dmm.remat.Remat):  # checkpoint every cycle, written as a user would
        name = "twice"

        def scan(self, body, state, xs, steps):
            return jax.lax.scan(jax.checkpoint(body), state, xs, length=steps)

    xs = np.random.default_rng(1).normal(size=(6, 2))
    m = dmm.compile(net())
    a = m.run(6, inputs={"src.out": xs}, remat=Twice())["out.y"]
    np.testing.assert_array_equal(a, m.run(6, inputs={"src.out": xs}, remat="none")["out.y"])
    assert m.resolve_remat("auto") == dmm.remat.NoRemat()
    assert dmm.compile(net(), backend="sparse").resolve_remat("auto") == dmm.remat.PerCycle()
