"""Criteria that rank links: the smallest by abs(w), the least damaging single cuts (one padded, vmapped
evaluation that compiles once as a network shrinks), and the Gauss-Newton gains of links that could be regrown."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dmm import ProgramError
from dmm.train import Trainer, TrainState

from .links import Link, link_names, live_links

PAD = 64
"""Single-cut batches are padded to a multiple of this many variants (and evaluated this many at a time)."""


def smallest_links(trainer: Trainer, state: TrainState, k: int, protect: Iterable[Link] = ()) -> list[tuple[Link, float]]:
    """The `k` (an int) live links of `state` of smallest abs(weight), excluding the ``(src, dst)`` pairs of
    `protect`, as ``[((src, dst), weight), ...]`` (ties by name)."""
    protect = set(protect)
    items = [(l, w) for l, w in live_links(state, trainer.machine).items() if l not in protect]
    items.sort(key=lambda lw: (abs(lw[1]), lw[0]))
    return items[:k]


def _cut_losses(trainer: Trainer, state: TrainState, cuts, inputs, data, *, horizon: int):
    var = trainer.variables(state)

    def one(cut):
        W = {k: jnp.where(cut[k], jnp.zeros_like(w), w) for k, w in var["W"].items()}
        return trainer.objective({**var, "W": W}, state, inputs, data, horizon)[1][0]

    return jax.lax.map(one, cuts, batch_size=PAD)


def cut_losses(
    trainer: Trainer, state: TrainState, cuts: Mapping[str, Any], inputs: Mapping[str, Any] | None = None, data: Any = None
) -> np.ndarray:
    """The data loss of `state` with each of n sets of W entries set to zero, in one vmapped evaluation.

    **Arguments:** `trainer`, `state`; `cuts`: {kind: bool array (n, *W_K.shape)}, True where variant i zeroes an
    entry (kinds left out: none); `inputs`, `data` as for `Trainer.update`.

    **Returns:** a NumPy array (n,) of losses (non-finite where a variant blows up). One compilation per n.
    """
    h = trainer.horizon(int(state.step))
    shapes = {k: np.shape(w) for k, w in state.params["W"].items()}
    counts = {np.shape(c)[0] for c in cuts.values()}
    if len(counts) != 1:
        raise ProgramError("cut_losses: every kind's cuts need the same leading count")
    n = counts.pop()
    full = {k: jnp.asarray(cuts[k], bool) if k in cuts else jnp.zeros((n, *s), bool) for k, s in shapes.items()}
    fn = trainer.jitted(_cut_losses, static_argnames=("horizon",))
    return np.asarray(fn(state, full, trainer.episode_inputs(inputs, h), data, horizon=h))


def single_cut_losses(
    trainer: Trainer, state: TrainState, links: list[Link], inputs: Mapping[str, Any] | None = None, data: Any = None
) -> np.ndarray:
    """The data loss of `state` without each of `links` (``(src, dst)`` pairs) alone, a float NumPy array
    (len(links),), inf where non-finite. The batch is padded to a multiple of `PAD` with variants that cut
    nothing, so a shrinking network reuses one compilation."""
    m = trainer.machine
    n = -(-len(links) // PAD) * PAD
    cuts = {k: np.zeros((n, *np.shape(w)), bool) for k, w in state.params["W"].items()}
    for i, l in enumerate(links):
        k, pos = m.entry(*l)
        cuts[k][(i, *np.atleast_1d(pos))] = True
    scores = cut_losses(trainer, state, cuts, inputs, data)[: len(links)]
    return np.where(np.isfinite(scores), scores, np.inf)


def least_damage(
    trainer: Trainer, state: TrainState, k: int, protect: Iterable[Link], candidates: int,
    inputs: Mapping[str, Any] | None = None, data: Any = None,
) -> list[tuple[Link, float]]:
    """The `k` links (an int) whose removal alone costs the least loss among the `candidates` (an int) smallest
    by abs(w) (`protect` excluded), as ``[((src, dst), weight), ...]`` by increasing loss."""
    pool = smallest_links(trainer, state, candidates, protect)
    if not pool:
        return []
    losses = single_cut_losses(trainer, state, [l for l, _ in pool], inputs, data)
    order = np.argsort(losses, kind="stable")
    return [pool[i] for i in order[:k]]


def _gauss_newton(trainer: Trainer, state: TrainState, inputs, data, *, residuals: Any, horizon: int):
    """(g, H) over ``params["W"]``: the gradient and the Gauss-Newton diagonal of Σ r² for r = residuals(trace, data)."""
    key = jax.random.fold_in(state.key, state.step) if trainer.machine.stochastic else None

    def r_of(W):
        trace, _ = trainer.episode_trace({**state.params, "W": W}, None, inputs, key, horizon)
        return jnp.ravel(residuals(trace, data))

    W = state.params["W"]
    r, J = r_of(W), jax.jacrev(r_of)(W)
    return {k: 2 * jnp.tensordot(r, J[k], axes=1) for k in W}, {k: 2 * jnp.sum(J[k] ** 2, axis=0) for k in W}


def regrow_gains(
    trainer: Trainer, state: TrainState, residuals: Any, inputs: Mapping[str, Any] | None = None, data: Any = None
) -> list[tuple[Link, float, float]]:
    """Gauss-Newton ranking of the links that could be given back to `state`.

    **Arguments:** `trainer` (neither batched nor through Self), `state`; `residuals`: ``residuals(trace, data)
    -> 1-D array`` r with the data loss L = Σ r² (compiled once per function); `inputs`, `data` as for
    `Trainer.update`.

    For every trainable link that is cut (mask False, weight 0): g = dL/dw = 2 Σ r ∂r/∂w and H = 2 Σ (∂r/∂w)² (one
    `jax.jacrev` of the residuals with respect to W). Setting that link alone to w* = −g/H lowers the linearised
    loss by g²/(2H).

    **Returns:** ``[((src, dst), gain, w*), ...]`` by decreasing gain (links with H = 0 left out).
    """
    m = trainer.machine
    if trainer.through_self is not None or trainer.batched:
        raise ProgramError("regrow_gains: trainers that train through Self or on batches are not supported")
    h = trainer.horizon(int(state.step))
    fn = trainer.jitted(_gauss_newton, static_argnames=("residuals", "horizon"))
    g, H = fn(state, trainer.episode_inputs(inputs, h), data, residuals=residuals, horizon=h)
    names = link_names(m)
    out = []
    for k in g:
        gk, hk = np.asarray(g[k], np.float64), np.asarray(H[k], np.float64)
        free = np.asarray(m.trainable["W"][k], bool) & ~np.asarray(state.mask["W"][k], bool) & (hk > 0)
        for pos in zip(*np.nonzero(free)):
            out.append((names[k][pos], float(gk[pos] ** 2 / (2 * hk[pos])), float(-gk[pos] / hk[pos])))
    out.sort(key=lambda x: -x[1])
    return out
