"""The host loop: `fit` runs training steps one jitted call per chunk, `fit_many` trains K stacked states at once.

A chunk of k steps is one `lax.scan` over the trainer's pure `train_step` (`scan_updates`), compiled once per
(horizon, k, single or stacked); a chunk never crosses a horizon change of the curriculum, and partial chunks go
step by step (`Trainer.update`), so no other length is compiled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from dmm import ProgramError

from .callbacks import Callback, Chunk
from .state import Metrics, TrainState

if TYPE_CHECKING:
    from .trainer import Trainer

FIELDS = ("loss", "penalty", "grad_norm", "links")


def steps_to_horizon_change(trainer: Trainer, step: int) -> int:
    """Steps from `step` (an int) until the trainer's curriculum changes the horizon (a large int if never)."""
    later = [start - step for start, _ in trainer.curriculum if start > step]
    return min(later) if later else 1 << 62


def scan_updates(trainer: Trainer, state: TrainState, inputs, data, *, horizon: int, k: int, many: bool):
    """`k` training steps in one `lax.scan` (pure; jit it): ``(state, Metrics with a leading axis k)``.

    A step whose metrics are not finite leaves the state as it was (the guard, or always when `many`: then the
    leaves of `state` carry a leading axis K and the scan is `vmap`ped over the members).
    """

    def run(start: TrainState):
        def body(s, _):
            new, metrics, _ = trainer.train_step(s, inputs, data, horizon=horizon)
            if many or trainer.guard:
                new = jax.tree_util.tree_map(lambda a, b: jnp.where(metrics.finite, a, b), new, s)
            return new, metrics

        return jax.lax.scan(body, start, None, length=k)

    return jax.vmap(run)(state) if many else run(state)


def run_chunk(trainer: Trainer, state: TrainState, inputs, data, k: int, *, many: bool = False):
    """`k` steps (an int > 1) from `state` in one jitted call; returns the new state and NumPy `Metrics` (k,)
    ((K, k) when `many`). With the guard (single state), a failing step is redone alone to raise its
    `NonFiniteError` (whose `state` is the last finite one)."""
    h = trainer.horizon(int(np.max(np.asarray(state.step))))
    fn = trainer.jitted(scan_updates, static_argnames=("horizon", "k", "many"))
    new, metrics = fn(state, trainer.episode_inputs(inputs, h), data, horizon=h, k=k, many=many)
    if trainer.guard and not many and not np.all(np.asarray(metrics.finite)):
        trainer.update(new, inputs, data)  # the scan froze the state before the failing step: diagnose it
    return new, jax.tree_util.tree_map(np.asarray, metrics)


def fit(
    trainer: Trainer,
    state: TrainState,
    n: int,
    inputs: Mapping[str, Any] | None = None,
    data: Any = None,
    *,
    chunk: int = 1,
    callbacks: Sequence[Callback] = (),
) -> tuple[TrainState, dict[str, np.ndarray]]:
    """Run `n` training steps of `trainer` from `state` (see `Trainer.fit`).

    **Arguments:** `inputs`, `data` as in `Trainer.update`; `chunk` (int >= 1): steps per jitted call;
    `callbacks`: `Callback`s told about every chunk (see `dmm.train.callbacks`).

    **Returns:** the final state and the history {"loss", "penalty", "grad_norm", "links"}: NumPy arrays (n,).
    """
    if chunk < 1:
        raise ProgramError(f"fit: chunk must be at least 1, not {chunk}")
    hist: dict[str, list] = {f: [] for f in FIELDS}
    done = 0
    try:
        while done < n:
            step = int(state.step)
            k = min(chunk, n - done, steps_to_horizon_change(trainer, step))
            for cb in callbacks:
                if cb.every:
                    k = min(k, cb.every - done % cb.every)
            if k < chunk:
                k = 1  # partial chunks go step by step (no extra compilation)
            if k == 1:
                state, one = trainer.update(state, inputs, data)
                metrics = jax.tree_util.tree_map(lambda x: np.asarray(x)[None], one)
            else:
                state, metrics = run_chunk(trainer, state, inputs, data, k)
            rows = {f: np.asarray(getattr(metrics, f)).astype(int if f == "links" else float) for f in FIELDS}
            for f, v in rows.items():
                hist[f].extend(v.tolist())
            done += k
            info = Chunk(state, step, rows, np.asarray([trainer.horizon(step + i) for i in range(k)]), done, n)
            for cb in callbacks:
                cb.chunk(info)
        for cb in callbacks:
            cb.end(state)
    finally:
        for cb in callbacks:
            cb.close()
    return state, {f: np.asarray(v) for f, v in hist.items()}


def fit_many(trainer: Trainer, states: TrainState, n: int, inputs: Mapping[str, Any] | None = None, data: Any = None, *,
             chunk: int = 100) -> tuple[TrainState, dict[str, np.ndarray]]:
    """Run `n` training steps on each of K stacked states at once (see `Trainer.fit_many`).

    **Returns:** the new stacked states and {"loss", "penalty", "grad_norm", "links", "finite"}: NumPy arrays (K, n).
    """
    if chunk < 1:
        raise ProgramError(f"fit_many: chunk must be at least 1, not {chunk}")
    steps = np.unique(np.asarray(states.step))
    if steps.size != 1:
        raise ProgramError(f"fit_many: the members' step counts differ ({steps.tolist()})")
    hist: dict[str, list] = {f: [] for f in Metrics._fields}
    done, step = 0, int(steps[0])
    while done < n:
        k = min(chunk, n - done, steps_to_horizon_change(trainer, step))
        states, metrics = run_chunk(trainer, states, inputs, data, k, many=True)
        for f, rows in hist.items():
            rows.append(getattr(metrics, f))
        done += k
        step += k
    return states, {f: np.concatenate(v, axis=1) if v else np.zeros((0, 0)) for f, v in hist.items()}
