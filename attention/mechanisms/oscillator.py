"""Oscillator synchrony: candidates phase-lock to a query pacemaker; softmax only before they synchronise."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from .base import COUNT, POSITIVE, Check, Mechanism, option, register_mechanism

Array = jax.Array


@register_mechanism("oscillator")
@dataclasses.dataclass(frozen=True)
class Oscillator(Mechanism):
    """Oscillator synchrony (`oscillator_weights`): Euler `steps` S ≥ 1, `time` T > 0, `coupling` gain > 0 and the
    initial `offset` ε from antiphase in (0, π). Its limit as S → ∞ is the exact flow (`limit_weights`), not
    softmax."""

    steps: int = option(50, COUNT)
    time: float = option(1.0, POSITIVE)
    coupling: float = option(1.0, POSITIVE)
    offset: float = option(1e-3, Check("in (0, π)", lambda v: isinstance(v, (int, float)) and 0 < v < math.pi))

    def weights(self, logits: Array, mask: Array | None = None, key: Array | None = None) -> Array:
        """`oscillator_weights` with these options; `logits` (..., n) float, `mask` (..., n) bool or None, `key`
        unused. Returns (..., n)."""
        return oscillator_weights(logits, mask, **self.options)

    def limit_weights(self, logits: Array, mask: Array | None = None) -> Array:
        """The exact continuous-time flow (S → ∞): w ∝ c with c_j = σ(g u_j + log a), a = tan²(ε/2), g = coupling,
        ε = offset, σ the logistic function, a *saturating* normalisation that equals softmax(g u) only while every
        g u_j ≪ -log a. Independent of `time`. Shapes as `weights`; 0 for masked candidates."""
        c = jax.nn.sigmoid(self.coupling * logits + 2.0 * math.log(math.tan(0.5 * self.offset)))
        c = c if mask is None else jnp.where(mask, c, 0.0)
        s = jnp.sum(c, axis=-1, keepdims=True)
        return c / jnp.where(s > 0, s, 1.0)


@functools.partial(jax.jit, static_argnames=("steps", "time", "coupling", "offset"))
def oscillator_weights(
    logits: Array,
    mask: Array | None = None,
    *,
    steps: int = Oscillator.steps,
    time: float = Oscillator.time,
    coupling: float = Oscillator.coupling,
    offset: float = Oscillator.offset,
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
