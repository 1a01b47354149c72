"""The training state and the metrics of one step, and the helpers that stack several states for `fit_many`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from dmm import Params, ProgramError, State


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree; save it with `dmm.files.save_checkpoint`).

    - `params`: ``{"W": {kind: W_K}, "neurons": {group: {param: array}}}`` as in `Machine.params` (float dtype of the
      machine). Through Self, ``params["W"]`` mirrors the matrix held by the running machine.
    - `opt_state`: the optimizer's state (moments shaped like `params`), as ``optimizer.init(params)`` makes it.
    - `mask`: booleans shaped like `params`: which entries train.
    - `step`: int32 scalar, training steps done.
    - `key`: PRNG key; step s uses ``fold_in(key, s)`` (for stochastic neurons), so training is deterministic.
    - `l1`, `l2`: scalars in the machine's dtype, the penalty coefficients in force (state, so that schedules can
      change them without recompiling and a resumed run sees the same values).
    - `run`: the running machine `State` when training through Self, else None.
    """

    params: Params
    opt_state: Any
    mask: Params
    step: jax.Array
    key: jax.Array
    l1: jax.Array
    l2: jax.Array
    run: State | None = None


class Metrics(NamedTuple):
    """What one step measured (scalars; with a leading axis when several steps or states are reported at once).

    - `loss`: the data loss before the update (batch mean), float.
    - `penalty`: the l1/l2 terms, float.
    - `grad_norm`: global norm of the masked gradient before clipping, float (0 for evaluations).
    - `links`: int32, trainable W entries still in the mask.
    - `finite`: bool, whether streams, loss and gradient were all finite.
    """

    loss: jax.Array
    penalty: jax.Array
    grad_norm: jax.Array
    links: jax.Array
    finite: jax.Array


def count_links(mask: Params) -> jax.Array:
    """Number of True entries of ``mask["W"]`` (the trainable links), an int32 scalar.

    **Arguments:** `mask`: booleans shaped like the parameters (``TrainState.mask``).
    """
    return sum((jnp.sum(m, dtype=jnp.int32) for m in jax.tree_util.tree_leaves(mask["W"])), jnp.int32(0))


def stack_states(states: Sequence[TrainState]) -> TrainState:
    """K training states (of one trainer) as one state whose every leaf has a leading axis K (for `fit_many`).

    **Arguments:** `states`: a non-empty sequence of `TrainState`s of one structure and shapes.
    """
    if not states:
        raise ProgramError("stack_states: no states")
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *states)


def unstack_state(states: TrainState, i: int) -> TrainState:
    """Member `i` (an int in 0..K-1) of stacked training states `states` (see `stack_states`)."""
    return jax.tree_util.tree_map(lambda x: x[i], states)
