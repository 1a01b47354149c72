"""The gamma-cycle race: winner-take-all races between exponential clocks, unbiased for softmax."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from .base import (
    COUNT,
    POSITIVE,
    Mechanism,
    choice,
    masked,
    option,
    register_mechanism,
    row_max,
    softmax_weights,
)

Array = jax.Array


@register_mechanism("race")
@dataclasses.dataclass(frozen=True)
class Race(Mechanism):
    """The gamma-cycle race (`race_weights`): `cycles` K ≥ 1, `grad` ("expectation", "relaxed" or "none") and the
    relaxation's `temperature` τ > 0. Stochastic; its limit as K → ∞ is softmax."""

    stochastic = True
    cycles: int = option(64, COUNT)
    grad: str = option("expectation", choice("expectation", "relaxed", "none"))
    temperature: float = option(0.5, POSITIVE)

    def weights(self, logits: Array, mask: Array | None = None, key: Array | None = None) -> Array:
        """`race_weights` with these options; `logits` (..., n) float, `mask` (..., n) bool or None, `key` a PRNG
        key. Returns (..., n)."""
        return race_weights(logits, key, mask, **self.options)


@functools.partial(jax.jit, static_argnames=("cycles", "grad", "temperature"))
def race_weights(
    logits: Array,
    key: Array,
    mask: Array | None = None,
    *,
    cycles: int = Race.cycles,
    grad: str = Race.grad,
    temperature: float = Race.temperature,
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
    u = masked(logits, mask)
    u = u - row_max(u)
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
