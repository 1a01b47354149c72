"""The bridge study: how close each biologically oriented mechanism comes to softmax attention.

On random problems (scores s ~ N(0, 1) over n candidates, values V ~ N(0, 1) of shape (n, d_v)), a mechanism given
the logits u = β·s produces weights w; the references are p = softmax(β s) and the attended output y = pV. Two
errors per problem:

- total-variation distance TV(w, p) = ½ Σ_j |w_j - p_j| (for unnormalised rates this is the ℓ1 distance / 2),
- relative output error ‖wV - pV‖ / ‖pV‖,

averaged over the problems, with the time per call (per problem, amortised over a jitted batch). `sweep` varies
one parameter; `fit_power_law` and `fit_geometric` fit the convergence rate. `benchmarks/bridge.py` runs the study
and writes `docs/bridge.md`. A script next to the benchmarks, not part of the installed packages.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from attention import Mechanism, softmax_weights
from attention import mechanism as resolve


class Problems(NamedTuple):
    """A set of random attention problems: `scores` (count, n) and `values` (count, n, d_v), float32."""

    scores: jax.Array
    values: jax.Array


def problems(key: jax.Array, count: int, n: int, d_v: int = 32) -> Problems:
    """`count` problems with n candidates: scores ~ N(0, 1), values ~ N(0, 1) of width `d_v`."""
    ks, kv = jax.random.split(key)
    return Problems(jax.random.normal(ks, (count, n)), jax.random.normal(kv, (count, n, d_v)))


def tv_distance(w: jax.Array, p: jax.Array) -> jax.Array:
    """½ Σ_j |w_j - p_j| over the last axis."""
    return 0.5 * jnp.sum(jnp.abs(w - p), axis=-1)


def output_error(w: jax.Array, p: jax.Array, values: jax.Array) -> jax.Array:
    """‖wV - pV‖ / ‖pV‖ per problem; `w`, `p` (..., n), `values` (..., n, d_v)."""
    y, ref = jnp.einsum("...n,...nd->...d", w, values), jnp.einsum("...n,...nd->...d", p, values)
    return jnp.linalg.norm(y - ref, axis=-1) / jnp.linalg.norm(ref, axis=-1)


def limit_weights(name: str, options: Mapping[str, Any], logits: jax.Array) -> jax.Array:
    """What mechanism `name` with `options` converges to as its count parameter grows (K cycles or S steps), other
    options fixed: its `Mechanism.limit_weights` (softmax for the race and rate competition, the exact phase flow
    for the oscillator). `logits` (..., n) float; returns weights (..., n)."""
    return resolve(name, options, "bridge").limit_weights(logits)


def synchronised_limit(logits: jax.Array) -> jax.Array:
    """The large-coupling (β → ∞) limit of the oscillator weights: uniform over the candidates with u_j > 0, the
    ones that phase-lock to the query (uniform over all if none is positive)."""
    pos = (logits > 0).astype(logits.dtype)
    pos = jnp.where(jnp.any(logits > 0, axis=-1, keepdims=True), pos, 1.0)
    return pos / jnp.sum(pos, axis=-1, keepdims=True)


class Measurement(NamedTuple):
    """One cell of a sweep: the mechanism, its options, n, β; mean and standard error of TV and of the output
    error over the problems; mean TV to the mechanism's own limit (`limit_weights`) and mean TV of that limit to
    softmax (the error left when K or S → ∞); time per call in µs."""

    mechanism: str
    options: dict[str, Any]
    n: int
    beta: float
    tv: float
    tv_se: float
    err: float
    err_se: float
    tv_limit: float
    tv_floor: float
    us_per_call: float


@functools.lru_cache(maxsize=64)
def _compiled(mech: Mechanism):
    """(weights(u, key), metrics(u, values, key)) for a batch of problems, each one jitted function (cached)."""

    def weights(u, key):
        keys = jax.random.split(key, u.shape[0])
        return jax.vmap(lambda uu, kk: mech.weights(uu, None, kk))(u, keys)

    def metrics(u, values, key):
        w, p, limit = weights(u, key), softmax_weights(u), mech.limit_weights(u)
        return tv_distance(w, p), output_error(w, p, values), tv_distance(w, limit), tv_distance(limit, p)

    return jax.jit(weights), jax.jit(metrics)


def _time(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def measure(
    name: str,
    options: Mapping[str, Any],
    probs: Problems,
    beta: float,
    key: jax.Array,
    *,
    chunk: int = 64,
    timing_batch: int = 16,
    repeats: int = 3,
) -> Measurement:
    """Measure mechanism `name` with `options` on `probs` at inverse temperature `beta` (see the module docstring).

    Problems are processed in chunks of `chunk` (bounded memory for the race); the time per call is the best of
    `repeats` runs of one jitted batch of `timing_batch` problems, divided by the batch size (NaN if `repeats` is
    0: no timing).
    """
    f, metrics = _compiled(resolve(name, options, "bridge"))
    u_all = beta * probs.scores
    count = u_all.shape[0]
    parts = [metrics(u_all[s : s + chunk], probs.values[s : s + chunk], jax.random.fold_in(key, i))
             for i, s in enumerate(range(0, count, chunk))]
    tv, err, lim, floor = (np.concatenate([np.asarray(p[j], np.float64) for p in parts]) for j in range(4))
    b = min(timing_batch, count)
    seconds = _time(f, u_all[:b], key, repeats=repeats) if repeats > 0 else math.nan
    se = lambda a: float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else 0.0
    return Measurement(
        name, dict(options), int(u_all.shape[1]), float(beta), float(tv.mean()), se(tv), float(err.mean()), se(err),
        float(lim.mean()), float(floor.mean()), 1e6 * seconds / b,
    )


def sweep(
    name: str,
    param: str,
    grid: Sequence[Any],
    probs: Problems,
    key: jax.Array,
    *,
    beta: float = 1.0,
    base: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> list[Measurement]:
    """`measure` with option `param` (or ``"beta"``) set to each value of `grid`, other options from `base`."""
    out = []
    for j, value in enumerate(grid):
        opts = dict(base or {})
        b = beta
        if param == "beta":
            b = float(value)
        else:
            opts[param] = value
        out.append(measure(name, opts, probs, b, jax.random.fold_in(key, j), **kwargs))
    return out


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit of log y = a + b log x; returns (b, e^a), i.e. y ≈ e^a · x^b."""
    lx, ly = np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64))
    b, a = np.polyfit(lx, ly, 1)
    return float(b), float(math.exp(a))


def fit_geometric(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit of log y = a + x log r; returns (r, e^a), i.e. y ≈ e^a · r^x (r < 1: geometric decay)."""
    b, a = np.polyfit(np.asarray(x, np.float64), np.log(np.asarray(y, np.float64)), 1)
    return float(math.exp(b)), float(math.exp(a))


def race_expected_tv(p: jax.Array, cycles: int) -> jax.Array:
    """The race's expected TV to softmax for large K (normal approximation of the win counts):
    E TV ≈ ½ Σ_j sqrt(2 p_j (1 - p_j) / (π K))."""
    return 0.5 * jnp.sum(jnp.sqrt(2.0 * p * (1.0 - p) / (math.pi * cycles)), axis=-1)
