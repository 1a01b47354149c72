"""Attention weights over n candidates: softmax and three biologically oriented replacements for it.

Every mechanism maps *logits* u (the scaled scores, last axis = the n candidates, any leading axes) and an optional
boolean mask to non-negative weights over the candidates, so each is a drop-in replacement for the softmax weights
inside any attention neuron of this package (``mechanism=`` and ``options=`` of the neuron factories).

| Mechanism | Weights after its parameter grows | Differentiable by |
|---|---|---|
| `softmax` | softmax(u), max-subtracted | exact gradient |
| `race` (gamma-cycle race) | win counts / K, unbiased for softmax(u); error ~ K^(-1/2) | expectation (straight-through) or a Gumbel relaxation |
| `oscillator` (phase synchrony) | softmax(u) in the near-antiphase regime; uniform over {u > 0} when it synchronises | unrolled relaxation |
| `rate` (rate competition) | softmax(u), geometrically in the steps S | unrolled relaxation |

The formulas are in each function's docstring; `docs/bridge.md` measures how close each comes to softmax.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from dmm import ProgramError

Array = jax.Array


def _masked(logits: Array, mask: Array | None) -> Array:
    return logits if mask is None else jnp.where(mask, logits, -jnp.inf)


def _row_max(u: Array, gradient: bool = False) -> Array:
    """max over the last axis (kept), 0 where every candidate is masked. Without `gradient` it is a constant for
    differentiation, which is exact for shift-invariant functions such as softmax."""
    m = jnp.max(u, axis=-1, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return m if gradient else jax.lax.stop_gradient(m)


@jax.jit
def softmax_weights(logits: Array, mask: Array | None = None) -> Array:
    """Softmax over the last axis in the max-subtracted form.

    w_j = exp(u_j - max u) / Σ_{k unmasked} exp(u_k - max u); masked candidates get 0, and a row with every
    candidate masked gets all zeros (not NaN).

    **Arguments:** `logits` (..., n) float; `mask` (..., n) bool or None (all candidates present).
    **Returns:** weights (..., n), same dtype as `logits`.
    """
    u = _masked(logits, mask)
    e = jnp.exp(u - _row_max(u))
    s = jnp.sum(e, axis=-1, keepdims=True)
    return e / jnp.where(s > 0, s, 1.0)


@functools.partial(jax.jit, static_argnames=("cycles", "grad", "temperature"))
def race_weights(
    logits: Array,
    key: Array,
    mask: Array | None = None,
    *,
    cycles: int = 64,
    grad: str = "expectation",
    temperature: float = 0.5,
) -> Array:
    """Gamma-cycle race: K = `cycles` winner-take-all races between exponential clocks.

    In every gamma cycle each candidate j fires after a latency t_j ~ Exp(λ_j) with rate λ_j ∝ exp(u_j); the first
    spike wins and inhibits the rest. The weights are the win counts over the K cycles divided by K. Because
    P(j fires first) = λ_j / Σ_k λ_k = softmax(u)_j, the estimator is unbiased, E[w] = softmax(u), with
    Var[w_j] = p_j (1 - p_j) / K, so its error falls as K^(-1/2). Latencies are drawn in the log domain,
    log t_j = log E_j - (u_j - max u) with E_j ~ Exp(1) (the max subtraction rescales every clock alike and leaves
    the winner unchanged); masked candidates never fire.

    Differentiability (`grad`):

    - ``"expectation"`` (default): straight-through to the expectation. The forward value is the win frequency;
      the gradient is that of its expectation softmax(u), i.e. w = p + stop_gradient(counts/K - p).
    - ``"relaxed"``: Gumbel-softmax relaxation of each race, w = mean_k softmax((u - log E_k) / τ) with
      τ = `temperature`, on the same samples; it equals the race as τ → 0 and is differentiable itself.
    - ``"none"``: the win frequency with zero gradient.

    **Arguments:** `logits` (..., n) float; `key` a PRNG key; `mask` (..., n) bool or None; `cycles` K ≥ 1.
    **Returns:** weights (..., n), summing to 1 (0 for a fully masked row).
    """
    u = _masked(logits, mask)
    u = u - _row_max(u)
    e = jax.random.exponential(key, (cycles, *u.shape), dtype=u.dtype)
    log_latency = jnp.log(e) - u
    valid = jnp.any(jnp.isfinite(u), axis=-1, keepdims=True)
    if grad == "relaxed":
        w = jnp.mean(softmax_weights(-log_latency / temperature, mask), axis=0)
        return jnp.where(valid, w, 0.0)
    winner = jnp.argmin(log_latency, axis=-1)
    counts = jnp.mean(jax.nn.one_hot(winner, u.shape[-1], dtype=u.dtype), axis=0)
    counts = jnp.where(valid, counts, 0.0)
    if grad == "none":
        return jax.lax.stop_gradient(counts)
    p = softmax_weights(logits, mask)
    return p + jax.lax.stop_gradient(counts - p)


@functools.partial(jax.jit, static_argnames=("steps", "time", "coupling", "offset"))
def oscillator_weights(
    logits: Array,
    mask: Array | None = None,
    *,
    steps: int = 50,
    time: float = 1.0,
    coupling: float = 1.0,
    offset: float = 1e-3,
) -> Array:
    """Oscillator synchrony: candidates phase-lock to a query pacemaker with a coupling set by similarity.

    The query is a pacemaker oscillator; candidate j is a phase oscillator of the same natural frequency coupled
    to it Kuramoto-style with strength κ_j = c·u_j (attractive for a positive score, repulsive for a negative one),
    c = `coupling` / (2T), T = `time`. In the query's rotating frame, with ψ_j = θ_j - θ_q,

        dψ_j/dt = -κ_j sin ψ_j,   ψ_j(0) = π - ε   (every candidate starts near antiphase; ε = `offset`),

    integrated by S = `steps` explicit Euler steps of dt = T/S in the variable δ_j = π - ψ_j (δ ← δ + dt κ sin δ,
    which keeps the small angles exact in float32). The weight is the phase coherence of each candidate with the
    query, c_j = |e^{iθ_j} + e^{iθ_q}|² / 4 = (1 + cos ψ_j)/2 = sin²(δ_j/2), normalised: w = c / Σ c.

    The exact flow gives tan(δ_j/2) = tan(ε/2)·e^{κ_j T}, so c_j = a e^{2κ_jT} / (1 + a e^{2κ_jT}) with
    a = tan²(ε/2). While every a e^{2κ_jT} ≪ 1 (near antiphase, before synchrony) c_j ∝ e^{2κ_jT} = e^{coupling·u_j}
    and w → softmax(coupling·u) as ε → 0 and S → ∞. When a candidate synchronises (a e^{2κ_jT} ≳ 1) its coherence
    saturates at 1: for large scores or coupling the weights tend to the uniform distribution over the candidates
    with u_j > 0, not to softmax. The mechanism is not shift-invariant (κ depends on u itself).

    Differentiable as a relaxation: gradients flow through the S unrolled Euler steps.

    **Arguments:** `logits` (..., n) float; `mask` (..., n) bool or None; `steps` S ≥ 1; `time` T > 0;
    `coupling` the gain (1 targets softmax(u)); `offset` ε in (0, π).
    **Returns:** weights (..., n), summing to 1 (0 for a fully masked row).
    """
    valid = jnp.ones(logits.shape, bool) if mask is None else mask
    kappa = jnp.where(valid, logits, 0.0) * (coupling / (2.0 * time))
    dt = time / steps
    delta0 = jnp.full(logits.shape, offset, logits.dtype)
    delta = jax.lax.fori_loop(0, steps, lambda _, d: d + dt * kappa * jnp.sin(d), delta0)
    coherence = jnp.where(valid, jnp.sin(0.5 * delta) ** 2, 0.0)
    s = jnp.sum(coherence, axis=-1, keepdims=True)
    return coherence / jnp.where(s > 0, s, 1.0)


def _masked_logsumexp(u: Array) -> Array:
    m = _row_max(u)
    return m + jnp.log(jnp.sum(jnp.exp(u - m), axis=-1, keepdims=True))


@functools.partial(jax.jit, static_argnames=("steps", "leak", "inhibition"))
def rate_weights(
    logits: Array,
    mask: Array | None = None,
    *,
    steps: int = 50,
    leak: float = 0.2,
    inhibition: float = 0.5,
) -> Array:
    """Rate competition: leaky rate units under divisive (shunting) global inhibition, relaxed for S steps.

    Unit j has a leaky membrane potential u_j driven by its score, an exponential rate nonlinearity, and a shared
    inhibitory pool with log-gain I that divides every rate (shunting inhibition) and tracks the log of the total
    drive. With u*_j = u_j - max u (the stable form: the best candidate's drive is the resting level), u_j(0) = 0
    and I(0) = log n (all rates start at 1/n), each of the S = `steps` steps does

        u_j ← u_j + α (u*_j - u_j)           α = `leak` (dt/τ_membrane)
        I   ← I + γ (log Σ_k e^{u_k} - I)    γ = `inhibition` (dt/τ_pool)
        r_j = e^{u_j - I}

    and the weights are the rates r after S steps (not renormalised: the pool does the normalising). The fixed
    point is r = softmax(u) exactly; before it the rates are flatter than softmax (u_j = (1 - (1-α)^S) u*_j) and their
    total differs from 1 by the pool's lag, so the error falls geometrically, as (1 - min(α, γ))^S.

    Differentiable as a relaxation: gradients flow through the S unrolled steps.

    **Arguments:** `logits` (..., n) float; `mask` (..., n) bool or None; `steps` S ≥ 1; `leak` α and
    `inhibition` γ in (0, 1].
    **Returns:** rates (..., n), non-negative (0 for masked candidates).
    """
    target = _masked(logits, mask)
    target = target - _row_max(target, gradient=True)  # the transient is not shift-invariant: keep the gradient
    valid = jnp.isfinite(target)
    target = jnp.where(valid, target, 0.0)
    n = jnp.sum(valid, axis=-1, keepdims=True).astype(logits.dtype)
    pool0 = jnp.log(jnp.maximum(n, 1.0))

    def step(_, carry):
        u, pool = carry
        u = u + leak * (target - u)
        pool = pool + inhibition * (_masked_logsumexp(jnp.where(valid, u, -jnp.inf)) - pool)
        return u, pool

    u, pool = jax.lax.fori_loop(0, steps, step, (jnp.zeros_like(target), pool0))
    return jnp.where(valid, jnp.exp(u - pool), 0.0)


class Mechanism(NamedTuple):
    """A resolved mechanism: `name`, `options` (dict), `stochastic` (needs a PRNG key) and
    `weights(logits, mask, key) -> weights` over the last axis."""

    name: str
    options: Mapping[str, Any]
    stochastic: bool
    weights: Callable[[Array, Array | None, Array | None], Array]


_OPTIONS: dict[str, dict[str, Any]] = {
    "softmax": {},
    "race": {"cycles": 64, "grad": "expectation", "temperature": 0.5},
    "oscillator": {"steps": 50, "time": 1.0, "coupling": 1.0, "offset": 1e-3},
    "rate": {"steps": 50, "leak": 0.2, "inhibition": 0.5},
}

MECHANISMS: tuple[str, ...] = tuple(_OPTIONS)
"""The names of the mechanisms: softmax, race, oscillator, rate."""


def _check(name: str, opts: dict[str, Any], where: str) -> None:
    def bad(msg: str) -> ProgramError:
        return ProgramError(f"{where}: mechanism {name!r}: {msg}")

    for k in ("cycles", "steps"):
        if k in opts and (not isinstance(opts[k], int) or isinstance(opts[k], bool) or opts[k] < 1):
            raise bad(f"{k} must be an int >= 1, not {opts[k]!r}")
    for k in ("temperature", "time", "coupling"):
        if k in opts and not (isinstance(opts[k], (int, float)) and opts[k] > 0 and math.isfinite(opts[k])):
            raise bad(f"{k} must be a positive number, not {opts[k]!r}")
    for k in ("leak", "inhibition"):
        if k in opts and not (isinstance(opts[k], (int, float)) and 0 < opts[k] <= 1):
            raise bad(f"{k} must be in (0, 1], not {opts[k]!r}")
    if "offset" in opts and not (isinstance(opts["offset"], (int, float)) and 0 < opts["offset"] < math.pi):
        raise bad(f"offset must be in (0, π), not {opts['offset']!r}")
    if "grad" in opts and opts["grad"] not in ("expectation", "relaxed", "none"):
        raise bad(f"grad must be 'expectation', 'relaxed' or 'none', not {opts['grad']!r}")


def mechanism(name: str = "softmax", options: Mapping[str, Any] | tuple = (), where: str = "attention") -> Mechanism:
    """Resolve a mechanism name and its options (a dict, or the tuple of pairs a neuron configuration stores).

    Raises `dmm.ProgramError` naming `where` for an unknown mechanism, an unknown option or a bad value.
    """
    if name not in _OPTIONS:
        raise ProgramError(f"{where}: unknown attention mechanism {name!r}; known: {list(MECHANISMS)}")
    given = dict(options)
    unknown = sorted(set(given) - set(_OPTIONS[name]))
    if unknown:
        raise ProgramError(f"{where}: mechanism {name!r} has no options {unknown}; its options: {sorted(_OPTIONS[name])}")
    opts = {**_OPTIONS[name], **given}
    _check(name, opts, where)
    if name == "softmax":
        return Mechanism(name, opts, False, lambda u, mask, key: softmax_weights(u, mask))
    if name == "race":
        return Mechanism(name, opts, True, lambda u, mask, key: race_weights(u, key, mask, **opts))
    if name == "oscillator":
        return Mechanism(name, opts, False, lambda u, mask, key: oscillator_weights(u, mask, **opts))
    return Mechanism(name, opts, False, lambda u, mask, key: rate_weights(u, mask, **opts))
