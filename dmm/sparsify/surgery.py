"""Surgery on a training state: `prune` removes links, `regrow` gives them back, both keeping the optimizer state of
every other entry (one shared edit, `edit_links`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dmm import ProgramError
from dmm.train import Trainer, TrainState

from .links import Link, links_mask


def prune(trainer: Trainer, state: TrainState, links: Iterable[Link] | Mapping[str, Any]) -> TrainState:
    """Remove `links` from `state`.

    **Arguments:** `trainer`; `state`: a `TrainState` (its leaves may carry a leading axis K, see
    `dmm.train.stack_states`); `links`: ``(src, dst)`` pairs, or {kind: bool array shaped like the kind's W (with
    the leading axis K for stacked states)}.

    Their weights are set to 0 and their mask entries to False; every params-shaped leaf of the optimizer state is
    zeroed at those entries and kept elsewhere (`optax.tree_utils.tree_map_params`); through Self, the running
    machine's matrix loses them too. Returns the new state.
    """
    where = dict(links) if isinstance(links, Mapping) else links_mask(trainer.machine, links)
    return edit_links(trainer, state, where, {}, live=False)


def regrow(trainer: Trainer, state: TrainState, links: Mapping[Link, float]) -> TrainState:
    """The inverse of `prune`: give the trainable links ``{(src, dst): weight}`` back to `state` with those starting
    weights (mask entries True, the optimizer's params-shaped state zeroed at those entries, everything else kept).
    Links that are not trainable in the program raise `ProgramError`."""
    m = trainer.machine
    where = {k: np.zeros(np.shape(w), bool) for k, w in state.params["W"].items()}
    values = {k: np.zeros(np.shape(w), np.float64) for k, w in state.params["W"].items()}
    for (src, dst), w in links.items():
        k, pos = m.entry(src, dst)
        if not np.asarray(m.trainable["W"][k])[pos]:
            raise ProgramError(f"regrow: link {src} -> {dst} is not trainable")
        where[k][pos], values[k][pos] = True, w
    return edit_links(trainer, state, where, values, live=True)


def edit_links(
    trainer: Trainer, state: TrainState, where: Mapping[str, Any], values: Mapping[str, Any], live: bool
) -> TrainState:
    """Set the W entries marked in `where` ({kind: bool array shaped like the kind's W}) to `values` ({kind: float
    array of that shape}; 0 for kinds left out), their mask entries to `live` (a bool), and zero the optimizer's
    params-shaped state there."""
    m = trainer.machine
    sel = {"W": {k: jnp.asarray(where.get(k, np.zeros(np.shape(w), bool))) for k, w in state.params["W"].items()},
           "neurons": jax.tree_util.tree_map(lambda x: jnp.zeros(jnp.shape(x), bool), state.params["neurons"])}
    zero = lambda x, c: jnp.where(c, jnp.zeros_like(x), x)
    W = {k: jnp.where(sel["W"][k], jnp.asarray(values[k], w.dtype) if k in values else jnp.zeros_like(w), w)
         for k, w in state.params["W"].items()}
    params = {**state.params, "W": W}
    mask = jax.tree_util.tree_map(lambda x, c: (x | c) if live else (x & ~c), state.mask, sel)
    opt_state = optax.tree_utils.tree_map_params(
        trainer.optimizer, zero, state.opt_state, sel, transform_non_params=lambda x, *_: x
    )
    run = state.run
    if run is not None:
        run = m.write(run, m.layout.self_stream, m.network.flatten(params["W"], jnp))
    return state._replace(params=params, mask=mask, opt_state=opt_state, run=run)
