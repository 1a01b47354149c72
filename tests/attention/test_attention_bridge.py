"""The bridge-study measurements (benchmarks/bridge_study.py, a script outside the installed packages)."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from helpers import load_script

B = load_script("benchmarks/bridge_study.py", "bridge_study")


def test_fits_recover_known_rates():
    x = np.array([16, 64, 256, 1024])
    b, c = B.fit_power_law(x, 3.0 * x**-0.5)
    assert abs(b + 0.5) < 1e-12 and abs(c - 3.0) < 1e-9
    r, c = B.fit_geometric(np.arange(5), 2.0 * 0.8 ** np.arange(5))
    assert abs(r - 0.8) < 1e-12 and abs(c - 2.0) < 1e-9


def test_distances():
    w, p = jnp.array([[0.5, 0.5, 0.0]]), jnp.array([[0.25, 0.25, 0.5]])
    assert float(B.tv_distance(w, p)[0]) == 0.5
    v = jnp.eye(3)[None]
    np.testing.assert_allclose(B.output_error(w, p, v), [np.linalg.norm([0.25, 0.25, -0.5]) / np.linalg.norm([0.25, 0.25, 0.5])])
    np.testing.assert_allclose(B.synchronised_limit(jnp.array([[1.0, -1.0, 2.0], [-1.0, -2.0, -3.0]])),
                               [[0.5, 0, 0.5], [1 / 3, 1 / 3, 1 / 3]])


def test_oscillator_limit_is_its_closed_form():
    u = jnp.array([[0.5, -1.0, 2.0, 0.0]])
    lim = B.limit_weights("oscillator", {"offset": 0.2, "coupling": 2.0}, u)
    a = math.tan(0.1) ** 2
    c = a * np.exp(2.0 * np.asarray(u[0])) / (1 + a * np.exp(2.0 * np.asarray(u[0])))
    np.testing.assert_allclose(lim[0], c / c.sum(), rtol=1e-5)
    np.testing.assert_allclose(B.limit_weights("rate", {}, u), jax.nn.softmax(u), rtol=1e-6)


def test_measure_a_small_race():
    rng = np.random.default_rng(0)
    probs = B.Problems(jnp.asarray(rng.normal(size=(32, 6)), jnp.float32), jnp.asarray(rng.normal(size=(32, 6, 4)), jnp.float32))
    m = B.measure("race", {"cycles": 64}, probs, 1.0, jax.random.key(1), chunk=16, repeats=0)
    assert m.n == 6 and m.tv_floor < 1e-6 and abs(m.tv_limit - m.tv) < 1e-9
    p = np.exp(np.asarray(probs.scores, np.float64))
    expected = float(np.mean(B.race_expected_tv(p / p.sum(1, keepdims=True), 64)))
    assert abs(m.tv - expected) < 4 * m.tv_se + 0.1 * expected
    rows = B.sweep("rate", "beta", [1.0, 4.0], probs, jax.random.key(2), base={"steps": 30}, timing_batch=4, repeats=1)
    assert [r.beta for r in rows] == [1.0, 4.0] and rows[0].options == {"steps": 30} and rows[0].us_per_call > 0
    assert np.isnan(m.us_per_call)
    assert 0 < rows[0].tv < 1e-2
