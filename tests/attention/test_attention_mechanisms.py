"""Softmax and its biologically oriented replacements (attention/mechanisms/)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmm
from attention import (
    mechanism,
    oscillator_weights,
    race_weights,
    rate_weights,
    softmax_weights,
)


def np_softmax(u):
    u = np.asarray(u, np.float64)
    e = np.exp(u - u.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def central_grad(f, x, h=1e-6):
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for i in range(x.size):
        d = np.zeros_like(x)
        d.flat[i] = h
        g.flat[i] = (f(x + d) - f(x - d)) / (2 * h)
    return g


# ------------------------------------------------------------------------------------------------ softmax
def test_softmax_is_stable_and_masked():
    u = jnp.array([1000.0, 999.0, -1000.0, 3.0])
    np.testing.assert_allclose(softmax_weights(u), np_softmax([1000.0, 999.0, -1000.0, 3.0]), rtol=1e-6, atol=1e-30)
    mask = jnp.array([False, True, True, True])
    w = softmax_weights(u, mask)
    np.testing.assert_allclose(w, np.r_[0.0, np_softmax([999.0, -1000.0, 3.0])], rtol=1e-6, atol=1e-30)
    dead = softmax_weights(u, jnp.zeros(4, bool))
    assert np.all(np.asarray(dead) == 0)
    g = jax.grad(lambda x: softmax_weights(x, jnp.zeros(4, bool)).sum())(u)
    assert np.all(np.isfinite(g))


# ---------------------------------------------------------------------------------------------------- race
U8 = np.array([1.2, -0.3, 0.5, 2.0, -1.5, 0.0, 0.9, -0.7], np.float32)


def test_race_mean_matches_softmax_within_its_variance():
    """Fixed keys: R independent estimators of K cycles; the mean of their R·K races is within 5 standard errors
    (standard error sqrt(p(1 - p)/(R K)), from the multinomial variance) of softmax."""
    p = np_softmax(U8)
    K, R = 256, 200
    keys = jax.random.split(jax.random.key(7), R)
    w = np.asarray(jax.vmap(lambda k: race_weights(jnp.asarray(U8), k, cycles=K))(keys), np.float64)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.abs(w * K - np.round(w * K)) < 1e-3)  # win counts / K
    se = np.sqrt(p * (1 - p) / (K * R))
    assert np.all(np.abs(w.mean(0) - p) <= 5 * se), (w.mean(0) - p) / se
    # the per-estimator variance is the multinomial one (chi-square-sized tolerance on R = 200 replicates)
    np.testing.assert_allclose(w.var(0, ddof=1), p * (1 - p) / K, rtol=0.35)


def test_race_error_halves_when_k_quadruples():
    """TV to softmax at K = 4096 is about half of that at K = 1024 (K^-1/2), over 64 fixed-key replicates."""
    u = jnp.asarray(U8)
    p = np_softmax(U8)

    def mean_tv(k_cycles, seed):
        keys = jax.random.split(jax.random.key(seed), 64)
        w = jax.vmap(lambda k: race_weights(u, k, cycles=k_cycles))(keys)
        return float(np.mean(0.5 * np.abs(np.asarray(w, np.float64) - p).sum(-1)))

    ratio = mean_tv(4096, 1) / mean_tv(1024, 2)
    assert 0.4 < ratio < 0.6, ratio


def test_race_gradients_and_masks():
    u = jnp.asarray(U8)
    c = jnp.arange(8.0)
    key = jax.random.key(3)
    # expectation (straight-through): the gradient is exactly that of softmax
    g = jax.grad(lambda x: race_weights(x, key, cycles=32) @ c)(u)
    np.testing.assert_allclose(g, jax.grad(lambda x: softmax_weights(x) @ c)(u), rtol=1e-5, atol=1e-7)
    # relaxed: it tends to the hard race on the same samples as the temperature falls, and it has a gradient
    hard = race_weights(u, key, cycles=32)
    def relaxed(x):
        w = race_weights(x, key, cycles=32, grad="relaxed", temperature=1e-3)
        return w @ c, w

    (_, soft), g = jax.value_and_grad(relaxed, has_aux=True)(u)
    assert float(jnp.abs(hard - soft).sum()) < 2 / 32 and np.all(np.isfinite(g))
    mask = jnp.arange(8) % 2 == 0
    w = race_weights(u, key, mask, cycles=32)
    assert np.all(np.asarray(w)[~np.asarray(mask)] == 0) and abs(float(w.sum()) - 1) < 1e-5


# ---------------------------------------------------------------------------------------------- oscillator
def test_oscillator_matches_its_closed_form_flow(x64):
    """Euler in S steps tends to the exact flow tan(δ/2) = tan(ε/2)·e^{κT}, error O(1/S)."""
    u = jnp.asarray(U8, jnp.float64) * 3.0
    eps, T = 1e-2, 1.0
    a = math.tan(eps / 2) ** 2
    c = a * np.exp(np.asarray(u)) / (1 + a * np.exp(np.asarray(u)))  # 2κT = u with coupling 1
    exact = c / c.sum()
    errs = [float(np.abs(oscillator_weights(u, steps=s, time=T, offset=eps) - exact).sum()) for s in (200, 800)]
    assert errs[1] < 0.3 * errs[0] and errs[1] < 5e-3, errs


def test_oscillator_limits():
    u = jnp.asarray(U8)
    # near antiphase and before synchrony: softmax
    w = oscillator_weights(u, steps=2000, offset=1e-4)
    assert 0.5 * float(jnp.abs(w - np_softmax(U8)).sum()) < 2e-3
    # strong coupling: the positively coupled candidates synchronise and share the weight equally
    w = np.asarray(oscillator_weights(u, steps=2000, coupling=400.0))
    pos = U8 > 0
    np.testing.assert_allclose(w, pos / pos.sum(), atol=1e-3)
    # masked candidates get nothing
    mask = jnp.asarray(U8 < 1.0)
    assert float(oscillator_weights(u, mask)[3]) == 0.0


def test_oscillator_and_rate_gradients_match_central_differences(x64):
    u = np.asarray(U8, np.float64) * 2
    c = np.linspace(-1, 1, 8)
    for f in (lambda x: oscillator_weights(x, steps=20, offset=0.05), lambda x: rate_weights(x, steps=12)):
        g = jax.grad(lambda x, f=f: f(x) @ jnp.asarray(c))(jnp.asarray(u))
        fd = central_grad(lambda x, f=f: float(jnp.asarray(f(jnp.asarray(x))) @ c), u)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------------------------------------- rate
def test_rate_competition_relaxes_to_softmax_geometrically():
    u = jnp.asarray(U8) * 2
    p = np_softmax(U8 * 2)
    tv = [0.5 * float(jnp.abs(rate_weights(u, steps=s, leak=0.2, inhibition=0.5) - p).sum()) for s in (20, 40, 60)]
    assert tv[2] < 1e-4
    # geometric: each 20 steps shrink the error by about 0.8^20 ≈ 0.0115
    assert 0.003 < tv[1] / tv[0] < 0.04 and 0.003 < tv[2] / tv[1] < 0.04, tv
    r0 = rate_weights(u, steps=1, leak=1e-6)
    np.testing.assert_allclose(r0, np.full(8, 1 / 8), rtol=1e-4)  # starts uniform
    w = rate_weights(jnp.array([50.0, 0.0, -50.0]), jnp.array([False, True, True]), steps=200)
    np.testing.assert_allclose(w, [0.0, 1.0, 0.0], atol=1e-6)


# ----------------------------------------------------------------------------------------------- resolver
def test_mechanism_resolution_and_errors():
    assert mechanism("race").stochastic and not mechanism("rate").stochastic
    assert mechanism("race", (("cycles", 8),)).options["cycles"] == 8
    for name, opts, msg in [
        ("softmx", {}, "unknown attention mechanism"),
        ("race", {"steps": 3}, "no options"),
        ("race", {"cycles": 0}, "cycles must be"),
        ("rate", {"leak": 1.5}, "leak must be"),
        ("oscillator", {"offset": 4.0}, "offset must be"),
        ("race", {"grad": "magic"}, "grad must be"),
    ]:
        with pytest.raises(dmm.ProgramError, match=msg):
            mechanism(name, opts, "here")


def test_mechanisms_are_validated_frozen_dataclasses():
    import dataclasses

    from attention import MECHANISMS, Oscillator, Race, Rate, Softmax, registered_mechanisms

    assert [registered_mechanisms()[n] for n in MECHANISMS] == [Softmax, Race, Oscillator, Rate]
    r = Race(cycles=8)
    assert r == mechanism("race", {"cycles": 8}) and r.options == {"cycles": 8, "grad": "expectation", "temperature": 0.5}
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.cycles = 9
    for make, msg in [(lambda: Race(cycles=0), "mechanism 'race': cycles must be an int >= 1, not 0"),
                      (lambda: Rate(inhibition=0.0), "mechanism 'rate': inhibition must be in"),
                      (lambda: Oscillator(time=-1.0), "mechanism 'oscillator': time must be a positive number")]:
        with pytest.raises(dmm.ProgramError, match=msg):
            make()
    # each mechanism declares what it converges to; the oscillator's limit is its exact flow, masks respected
    u = jnp.asarray(U8)
    np.testing.assert_allclose(Rate().limit_weights(u), np_softmax(U8), rtol=1e-5)
    osc = Oscillator(offset=0.05)
    np.testing.assert_allclose(oscillator_weights(u, steps=4000, offset=0.05), osc.limit_weights(u), atol=1e-3)
    mask = jnp.asarray(U8 < 1.0)
    lim = osc.limit_weights(u, mask)
    assert float(lim[3]) == 0.0 and abs(float(lim.sum()) - 1) < 1e-6


def test_a_mechanism_registered_from_outside_drives_the_neurons():
    import dataclasses

    import neurons
    from attention import POSITIVE, Mechanism, attention_weights, option, register_mechanism

    @register_mechanism("test_power")
    @dataclasses.dataclass(frozen=True)
    class Power(Mechanism):
        """w ∝ softmax(u)^power."""

        power: float = option(2.0, POSITIVE)

        def weights(self, logits, mask=None, key=None):
            return softmax_weights(self.power * logits, mask)

    assert mechanism("test_power", {"power": 3.0}).power == 3.0
    with pytest.raises(dmm.ProgramError, match="here: mechanism 'test_power': power must be a positive number"):
        mechanism("test_power", {"power": -1.0}, "here")
    with pytest.raises(dmm.ProgramError, match="already registered"):
        register_mechanism("race")(Power)
    kind = dmm.Kind("cands", (4,))
    s = np.array([0.3, -1.0, 1.2, 0.0], np.float32)
    p = dmm.Program()
    p.add("s", neurons.const(s, kind))
    p.add("w", attention_weights(kind, mechanism="test_power", options={"power": 3.0}))
    p.link("s.out", "w.scores", 1.0)
    w = dmm.compile(p).run(2, record=["w.weights"])["w.weights"][1]
    np.testing.assert_allclose(w, np_softmax(3.0 * s), rtol=1e-5)
