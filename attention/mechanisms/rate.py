"""Rate competition: leaky rate units under divisive global inhibition, relaxing geometrically to softmax."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from .base import (
    COUNT,
    FRACTION,
    Mechanism,
    masked,
    option,
    register_mechanism,
    row_max,
)

Array = jax.Array


def _masked_logsumexp(u: Array) -> Array:
    m = row_max(u)
    return m + jnp.log(jnp.sum(jnp.exp(u - m), axis=-1, keepdims=True))


@register_mechanism("rate")
@dataclasses.dataclass(frozen=True)
class Rate(Mechanism):
    """Rate competition (`rate_weights`): relaxation `steps` S ≥ 1, `leak` α and `inhibition` γ in (0, 1]. Its
    limit as S → ∞ is softmax."""

    steps: int = option(50, COUNT)
    leak: float = option(0.2, FRACTION)
    inhibition: float = option(0.5, FRACTION)

    def weights(self, logits: Array, mask: Array | None = None, key: Array | None = None) -> Array:
        """`rate_weights` with these options; `logits` (..., n) float, `mask` (..., n) bool or None, `key` unused.
        Returns (..., n)."""
        return rate_weights(logits, mask, **self.options)


@functools.partial(jax.jit, static_argnames=("steps", "leak", "inhibition"))
def rate_weights(
    logits: Array,
    mask: Array | None = None,
    *,
    steps: int = Rate.steps,
    leak: float = Rate.leak,
    inhibition: float = Rate.inhibition,
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
    target = masked(logits, mask)
    target = target - row_max(target, gradient=True)  # the transient is not shift-invariant: keep the gradient
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
