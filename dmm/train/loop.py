"""The host loop: `fit` runs training steps one jitted call per chunk, `fit_many` trains K stacked states at once.

A chunk of k steps is one `lax.scan` over the trainer's pure `train_step` (`scan_updates`), compiled once per
(horizon, k, single or stacked); a chunk never crosses a horizon change of the curriculum, and partial chunks go
step by step (`Trainer.update`), so no other length is compiled.

Where the batches come from (`fit`'s arguments; `inputs`/`data` and `batches` exclude each other):

- fixed `inputs` and `data`: the same episode inputs at every step;
- ``batches=`` a `BatchFn` or any callable: a *batch function* ``(key, step) -> (inputs, data)`` of pure JAX
  (jittable; shapes fixed), called inside the jitted step (inside the chunk's scan) with the traced int32 step count
  ``state.step`` before the update and the key ``BatchFn.key(state.key, state.step)``, so chunked and step-by-step
  training see the same batches and give the same result, and a run is deterministic given the state's key;
- ``batches=`` anything else: an *iterable* of ``(inputs, data)`` pairs, consumed on the host, one pair per step.
  For a chunk of k steps, k pairs are pulled and stacked (their shapes must agree) and the scan runs over them; an
  iterator that ends early ends training (the history is then shorter than `n`).

Held-out evaluation (``eval_every=k``): after every step whose count is a multiple of k (chunks end there), the
trainer's `Trainer.measure` runs on the evaluation batch (`eval_batch`: an ``(inputs, data)`` pair, or a function
``key -> (inputs, data)`` called once per `fit` with `eval_key`, by default ``EVAL_STREAM`` folded into the state's
key): the data loss and the trainer's `metrics`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
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

BATCH_STREAM = 0x62617463
"""Folded into a state's key (then the step is) to make the key of a batch function's step: ``"batc"``."""

EVAL_STREAM = 0x6576616C
"""Folded into a state's key to make the default key of an evaluation batch function: ``"eval"``."""


@dataclasses.dataclass(frozen=True)
class BatchFn:
    """A batch function for ``Trainer.fit(..., batches=BatchFn(fn))`` (a plain callable is wrapped in one).

    **Arguments:** `fn`: ``fn(key, step) -> (inputs, data)``, pure JAX that runs inside jit: `key` a PRNG key (of
    the state's key type), `step` an int32 scalar (the step count before the update); `inputs`
    ``{output stream: array (B, steps, *shape)}`` (no B axis when the trainer is not batched; at least the horizon
    long) and `data` the loss's data (a pytree; leading axis B when batched), their shapes the same at every step.

    Calling a `BatchFn` calls `fn`. It is a static argument of the jitted steps: reuse one object (or one function)
    across `fit` calls to reuse their compilations.
    """

    fn: Callable[[jax.Array, jax.Array], tuple[Mapping[str, Any] | None, Any]]

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ProgramError(f"BatchFn: fn must be a function (key, step) -> (inputs, data), not {self.fn!r}")

    def __call__(self, key: jax.Array, step: jax.Array) -> tuple[Mapping[str, Any] | None, Any]:
        return self.fn(key, step)

    @staticmethod
    def key(key: jax.Array, step: jax.Array) -> jax.Array:
        """The key of step `step` (an int or int32 scalar) for a state's key `key`:
        ``fold_in(fold_in(key, BATCH_STREAM), step)`` (independent of the key stochastic neurons use)."""
        return jax.random.fold_in(jax.random.fold_in(key, BATCH_STREAM), step)


def pair(value: Any, where: str) -> tuple[Any, Any]:
    """`value` as an ``(inputs, data)`` pair (a tuple or list of two), else `ProgramError` naming `where`."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ProgramError(f"{where} must give (inputs, data) pairs, got {type(value).__name__}")
    inputs, data = value
    if inputs is not None and not isinstance(inputs, Mapping):
        raise ProgramError(f"{where}: inputs must be a mapping {{output stream: array}} or None, got "
                           f"{type(inputs).__name__}")
    return inputs, data


def batch_source(inputs: Any, data: Any, batches: Any) -> BatchFn | Iterator | None:
    """`fit`'s batch source: None (fixed `inputs` and `data`), a `BatchFn` (`batches` a `BatchFn` or callable) or an
    iterator (`batches` any other iterable). Both inputs/data and batches: `ProgramError`."""
    if batches is None:
        return None
    if inputs is not None or data is not None:
        raise ProgramError("fit: give either inputs/data or batches, not both")
    if isinstance(batches, BatchFn):
        return batches
    if callable(batches):
        return BatchFn(batches)
    try:
        return iter(batches)
    except TypeError:
        raise ProgramError(
            f"fit: batches must be a batch function (key, step) -> (inputs, data) or an iterable of (inputs, data) "
            f"pairs, not {type(batches).__name__}"
        ) from None


def draw(trainer: Trainer, state: TrainState, *, batches: BatchFn, horizon: int):
    """The batch of `state`'s step from batch function `batches` (pure; jit it): inputs as `episode_inputs` returns
    them (cut to `horizon`) and data, constrained to the trainer's mesh when it has `devices`."""
    inputs, data = pair(batches(BatchFn.key(state.key, state.step), state.step), "the batch function")
    return trainer.constrain_batch(trainer.episode_inputs(inputs, horizon), data)


def steps_to_horizon_change(trainer: Trainer, step: int) -> int:
    """Steps from `step` (an int) until the trainer's curriculum changes the horizon (a large int if never)."""
    later = [start - step for start, _ in trainer.curriculum if start > step]
    return min(later) if later else 1 << 62


def scan_updates(trainer: Trainer, state: TrainState, inputs, data, *, horizon: int, k: int, many: bool,
                 batches: BatchFn | None = None, stacked: bool = False):
    """`k` training steps in one `lax.scan` (pure; jit it): ``(state, Metrics with a leading axis k)``.

    Each step trains on `inputs` and `data` (fixed); with `stacked`, on their slices along a leading axis k (a stack
    of k batches); with `batches` (a `BatchFn`; `inputs`, `data` unused), on the batch it draws for the step.
    With the guard (or always when `many`: then the leaves of `state` carry a leading axis K and the scan is
    `vmap`ped over the members), a step whose metrics are not finite leaves the state as it was, and so do the
    steps after it.
    """

    def run(start: TrainState):
        def body(carry, x):
            s, ok = carry
            if batches is not None:
                i, d = draw(trainer, s, batches=batches, horizon=horizon)
            else:
                i, d = x if stacked else (inputs, data)
            new, metrics, _ = trainer.train_step(s, i, d, horizon=horizon)
            if many or trainer.guard:
                ok = ok & metrics.finite
                new = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, s)
            return (new, ok), metrics

        xs = (inputs, data) if stacked else None
        (final, _), metrics = jax.lax.scan(body, (start, jnp.asarray(True)), xs, length=k)
        return final, metrics

    return jax.vmap(run)(state) if many else run(state)


def run_chunk(trainer: Trainer, state: TrainState, inputs, data, k: int, *, many: bool = False,
              batches: BatchFn | None = None, stacked: bool = False):
    """`k` steps (an int > 1) from `state` in one jitted call; returns the new state and NumPy `Metrics` (k,)
    ((K, k) when `many`). `inputs`, `data`, `batches`, `stacked` as in `scan_updates`, except that fixed inputs
    are as `Trainer.update` takes them (cut to the horizon here) and stacked ones as `stack_batches` returns them.
    With the guard (single state), a failing step is redone alone to raise its `NonFiniteError` (whose `state` is
    the last finite one)."""
    h = trainer.horizon(int(np.max(np.asarray(state.step))))
    fn = trainer.jitted(scan_updates, static_argnames=("horizon", "k", "many", "batches", "stacked"))
    if batches is None and not stacked:
        inputs = trainer.episode_inputs(inputs, h)
        inputs, data = trainer.shard_batch(inputs, data)
    new, metrics = fn(state, inputs, data, horizon=h, k=k, many=many, batches=batches, stacked=stacked)
    if trainer.guard and not many and not np.all(np.asarray(metrics.finite)):
        # the scan froze the state before the failing step: diagnose it
        if batches is not None:
            inputs, data = trainer.jitted(draw, static_argnames=("batches", "horizon"))(new, batches=batches, horizon=h)
        elif stacked:
            i = int(new.step) - int(state.step)
            inputs, data = jax.tree_util.tree_map(lambda x: x[i], (inputs, data))
        trainer.update(new, inputs, data)
    return new, jax.tree_util.tree_map(np.asarray, metrics)


def stack_batches(trainer: Trainer, pairs: Sequence[tuple[Any, Any]], h: int):
    """k ``(inputs, data)`` pairs as one stack (every leaf with a leading axis k; inputs cut to horizon `h` and in
    the machine's dtype, the batch axis split over the trainer's mesh)."""
    cut = [(trainer.episode_inputs(i, h), jax.tree_util.tree_map(jnp.asarray, d)) for i, d in pairs]
    try:
        inputs, data = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *cut)
    except (ValueError, TypeError) as e:
        raise ProgramError(f"fit: the {len(pairs)} batches of one chunk differ in structure or shape ({e})") from None
    return trainer.shard_batch(inputs, data, axis=1)


def eval_pair(trainer: Trainer, state: TrainState, eval_batch: Any, eval_key: jax.Array | None):
    """The evaluation batch of `fit`: `eval_batch` itself (a pair) or, a function, its value at `eval_key` (default
    `EVAL_STREAM` folded into the state's key)."""
    if callable(eval_batch):
        key = jax.random.fold_in(state.key, EVAL_STREAM) if eval_key is None else eval_key
        return pair(eval_batch(key), "eval_batch")
    return pair(eval_batch, "eval_batch")


def fit(
    trainer: Trainer,
    state: TrainState,
    n: int,
    inputs: Mapping[str, Any] | None = None,
    data: Any = None,
    *,
    batches: Any = None,
    chunk: int = 1,
    eval_every: int = 0,
    eval_batch: Any = None,
    eval_key: jax.Array | None = None,
    callbacks: Sequence[Callback] = (),
) -> tuple[TrainState, dict[str, np.ndarray]]:
    """Run `n` training steps of `trainer` from `state` (see `Trainer.fit` and the module docstring).

    **Arguments:** `inputs`, `data` as in `Trainer.update`, or `batches` (a batch function or an iterable of
    ``(inputs, data)`` pairs); `chunk` (int >= 1): steps per jitted call; `eval_every` (int >= 0; 0: none) with
    `eval_batch` (a pair or a function of a key) and `eval_key` (PRNG key or None): held-out evaluation;
    `callbacks`: `Callback`s told about every chunk (see `dmm.train.callbacks`).

    **Returns:** the final state and the history {"loss", "penalty", "grad_norm", "links"}: NumPy arrays (steps
    done: `n` unless an iterator ended); with `eval_every` also "eval_step" (int array (E,): the step count at each
    evaluation), "eval_loss" and "eval_<metric>" for each of the trainer's metrics (float64 arrays (E,)).
    """
    if chunk < 1:
        raise ProgramError(f"fit: chunk must be at least 1, not {chunk}")
    source = batch_source(inputs, data, batches)
    if not isinstance(eval_every, (int, np.integer)) or eval_every < 0:
        raise ProgramError(f"fit: eval_every must be a non-negative int, not {eval_every!r}")
    if eval_every and eval_batch is None:
        raise ProgramError("fit: eval_every needs an eval_batch ((inputs, data) or a function key -> (inputs, data))")
    if eval_batch is not None and not eval_every:
        raise ProgramError("fit: eval_batch needs eval_every (evaluate every that many steps)")
    state = trainer.replicate(state)
    held_out = eval_pair(trainer, state, eval_batch, eval_key) if eval_every else None
    hist: dict[str, list] = {f: [] for f in FIELDS}
    evals: dict[str, list] = {f: [] for f in ("step", "loss", *trainer.metrics)} if eval_every else {}
    pending: list[tuple[Any, Any]] = []
    exhausted = False
    done = 0
    try:
        while done < n:
            step = int(state.step)
            k = min(chunk, n - done, steps_to_horizon_change(trainer, step))
            for cb in callbacks:
                if cb.every:
                    k = min(k, cb.every - done % cb.every)
            if eval_every:
                k = min(k, eval_every - step % eval_every)
            if k < chunk:
                k = 1  # partial chunks go step by step (no extra compilation)
            if isinstance(source, Iterator):
                while len(pending) < k and not exhausted:
                    try:
                        pending.append(pair(next(source), "the batch iterator"))
                    except StopIteration:
                        exhausted = True
                if not pending:
                    break
                if len(pending) < k:
                    k = 1
                use, pending = pending[:k], pending[k:]
            if k == 1:
                if isinstance(source, BatchFn):
                    h = trainer.horizon(step)
                    fn = trainer.jitted(draw, static_argnames=("batches", "horizon"))
                    state, one = trainer.update(state, *fn(state, batches=source, horizon=h))
                elif isinstance(source, Iterator):
                    state, one = trainer.update(state, *use[0])
                else:
                    state, one = trainer.update(state, inputs, data)
                metrics = jax.tree_util.tree_map(lambda x: np.asarray(x)[None], one)
            elif isinstance(source, BatchFn):
                state, metrics = run_chunk(trainer, state, None, None, k, batches=source)
            elif isinstance(source, Iterator):
                state, metrics = run_chunk(trainer, state, *stack_batches(trainer, use, trainer.horizon(step)), k,
                                           stacked=True)
            else:
                state, metrics = run_chunk(trainer, state, inputs, data, k)
            rows = {f: np.asarray(getattr(metrics, f)).astype(int if f == "links" else float) for f in FIELDS}
            for f, v in rows.items():
                hist[f].extend(v.tolist())
            done += k
            evaluation = None
            if eval_every and (step + k) % eval_every == 0:
                evaluation = trainer.measure(state, *held_out)
                evals["step"].append(step + k)
                for name, v in evaluation.items():
                    evals[name].append(v)
            info = Chunk(state, step, rows, np.asarray([trainer.horizon(step + i) for i in range(k)]), done, n,
                         evaluation)
            for cb in callbacks:
                cb.chunk(info)
        for cb in callbacks:
            cb.end(state)
    finally:
        for cb in callbacks:
            cb.close()
    out = {f: np.asarray(v) for f, v in hist.items()}
    if eval_every:
        out["eval_step"] = np.asarray(evals.pop("step"), dtype=int)
        out.update({f"eval_{name}": np.asarray(v, dtype=np.float64) for name, v in evals.items()})
    return state, out


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
