"""The audio neuron y = sin(a ⊙ x + b)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import dmm
import neurons


def oscillator(kind, a, b):
    p = dmm.Program()
    p.add("timer", neurons.timer())
    p.add("a", neurons.const(a, kind if kind != dmm.NUMBER else None))
    p.add("b", neurons.const(b, kind if kind != dmm.NUMBER else None))
    p.add("osc", neurons.sine(kind))
    p.link("timer.out", "timer.in")
    p.link("a.out", "osc.a")
    p.link("b.out", "osc.b")
    return p


def test_sine_oscillator():
    p = oscillator(dmm.NUMBER, 0.3, 0.1)
    p.link("timer.out", "osc.x")
    trace = dmm.compile(p).run(20)
    c = np.arange(1, 21)
    timer = c - 1  # one link from the timer
    a = np.where(c >= 2, 0.3, 0.0)  # constants reach the oscillator from cycle 2 (their Y_0 is 0)
    b = np.where(c >= 2, 0.1, 0.0)
    np.testing.assert_allclose(trace["osc.out"], np.sin(a * timer + b), rtol=1e-6, atol=1e-6)


def test_sine_frequency_modulation_on_vectors():
    """A vector sine whose phase input is another sine's output (frequency modulation)."""
    vec = dmm.Kind("vec", (3,))
    p = oscillator(vec, np.array([0.1, 0.2, 0.3]), np.zeros(3))
    p.add("t3", neurons.linear(dmm.NUMBER, vec, matrix=np.ones((3, 1))))
    p.link("timer.out", "t3.in")
    p.link("t3.out", "osc.x")
    p.add("mod", neurons.sine(vec))
    p.link("osc.out", "mod.b", 0.5)
    p.link("t3.out", "mod.x")
    p.link("a.out", "mod.a", 2.0)
    trace = dmm.compile(p).run(12, record=["osc.out", "mod.out", "mod.a", "mod.x", "mod.b"])
    x = trace["mod.a"] * trace["mod.x"] + trace["mod.b"]
    np.testing.assert_allclose(trace["mod.out"], np.sin(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(trace["mod.b"][1:], 0.5 * trace["osc.out"][:-1], rtol=1e-6)


def test_sine_gradient(x64):
    p = oscillator(dmm.NUMBER, 0.3, 0.1)
    p.link("timer.out", "osc.x")
    m = dmm.compile(p, dtype=jnp.float64)

    def loss(w):
        params = m.set_weights({("a.out", "osc.a"): w})
        return jnp.sum(m.run(10, params=params, record=["osc.out"])["osc.out"] ** 2)

    h = 1e-6
    np.testing.assert_allclose(jax.grad(loss)(1.0), (loss(1.0 + h) - loss(1.0 - h)) / (2 * h), rtol=1e-6)
