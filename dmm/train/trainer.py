"""Training network matrices (and neuron parameters) by backpropagation through time, in the optax style.

A `Trainer` holds what does not change during training: the `Machine`, a loss on traces, an optax
`GradientTransformation`, the horizon (cycles per episode) and the options. A `TrainState` (a NamedTuple pytree)
holds everything that does: parameters, optimizer state, the trainable mask, the step, the PRNG key, the penalty
coefficients and, when training through Self, the running machine state. One training step is ONE jitted call:

    episode  run `horizon` cycles (one `lax.scan`) from the initial state, record the streams the loss reads
    loss     loss(trace, data) + l1·Σ mask·|p| + l2·Σ mask·p²       (mean over the batch when batched)
    update   g = mask·∇loss, optional clip to a global norm, (u, opt) = optimizer.update(g, opt, p), p += mask·u

The mask is a boolean pytree shaped like the parameters: True entries train, False entries are fixed ("hard
links", and the links removed by pruning, which are also held at zero). By default it is `machine.trainable` (the
program's `trainable=True` links and the neuron parameters their types list as trainable).

Example:

    trainer = dmm.Trainer(machine, loss, optax.adam(1e-3), steps=140, l1=1e-3)
    state = trainer.init(key=jax.random.key(0))
    state, history = trainer.fit(state, 1000, data=targets)

The loss is ``loss(trace, data) -> scalar``: `trace` is a `dmm.Trace` of the episode (arrays of shape
(horizon, *kind.shape) for the recorded streams, `trace.state` the final state) and `data` whatever the caller
passes (targets, say). With ``batched=True`` every array of `inputs` and `data` has a leading batch axis, the episode
is `vmap`ped over it, and the loss is the batch mean.

With a *curriculum* ``((0, 35), (500, 70), (1000, 140))`` the horizon is 35 cycles from step 0, 70 from step 500
and 140 from step 1000 (inputs are cut to the horizon; the loss sees a trace of that length). Each horizon compiles
once.

*Training through Self* (``through_self="upd.out"``): the program has a Self neuron and an update channel (an
`edit_channel` linked into Self's delta input with a hard weight-1 link). The matrix being trained is the one the
running machine holds in Self's output; the episode starts from it, and each optimizer update U is delivered as a
matrix-valued delta on the channel: the machine runs two more cycles with the channel emitting U, and its own Self
neuron adds it (W ← W + U). ``episodes="reset"`` starts each episode from the program's initial streams with the
running matrix (this matches ordinary training step for step); ``"continue"`` keeps the running machine going, so
it learns while it runs.

NaN/Inf guard (``guard=True``): every episode checks every stream at every cycle; a non-finite stream, loss or
gradient stops training with `NonFiniteError` naming the step, the first cycle and the stream; the error's `state`
attribute holds the last finite `TrainState` (the one before the failing step), also when `fit` was running many
steps.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TextIO

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dmm import NETWORK, Machine, NonFiniteError, Params, ProgramError, State, Trace


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree; save it with `dmm.save_checkpoint`).

    - `params`: ``{"W": {kind: W_K}, "neurons": {group: {param: array}}}`` as in `Machine.params` (float dtype of the
      machine). Through Self, ``params["W"]`` mirrors the matrix held by the running machine.
    - `opt_state`: the optimizer's state (moments shaped like `params`).
    - `mask`: booleans shaped like `params`: which entries train.
    - `step`: int32 scalar, training steps done.
    - `key`: PRNG key; step s uses ``fold_in(key, s)`` (for stochastic neurons), so training is deterministic.
    - `l1`, `l2`: scalars in the machine's dtype, the penalty coefficients in force (state, so that schedules can change them
      without recompiling and a resumed run sees the same values).
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
    """What one step measured (scalars): `loss` (the data loss before the update, batch mean), `penalty`
    (l1/l2 terms), `grad_norm` (global norm of the masked gradient, before clipping), `links` (trainable W entries
    still in the mask), `finite` (bool: streams, loss and gradient were all finite)."""

    loss: jax.Array
    penalty: jax.Array
    grad_norm: jax.Array
    links: jax.Array
    finite: jax.Array


def count_links(mask: Params) -> jax.Array:
    """Number of True entries of ``mask["W"]`` (the trainable links), an int32 scalar."""
    return sum((jnp.sum(m, dtype=jnp.int32) for m in jax.tree_util.tree_leaves(mask["W"])), jnp.int32(0))


def _masked(tree: Any, mask: Any) -> Any:
    return jax.tree_util.tree_map(lambda x, m: jnp.where(m, x, jnp.zeros_like(x)), tree, mask)


def _penalty(params: Params, mask: Params, l1: jax.Array, l2: jax.Array) -> jax.Array:
    """l1·Σ mask·|p| + l2·Σ mask·p² over the floating leaves, in the parameters' dtype."""
    total = None
    for p, m in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(mask)):
        if jnp.issubdtype(p.dtype, jnp.floating):
            w = jnp.where(m, p, jnp.zeros_like(p))
            term = l1.astype(p.dtype) * jnp.sum(jnp.abs(w)) + l2.astype(p.dtype) * jnp.sum(w * w)
            total = term if total is None else total + term
    return jnp.zeros((), l1.dtype) if total is None else total


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
    """Trains a machine's parameters (see the module docstring).

    **Arguments:**

    - `machine`: the compiled `Machine`.
    - `loss`: ``loss(trace, data) -> scalar``; `trace` holds the `record`ed streams of one episode.
    - `optimizer`: any optax `GradientTransformation` (e.g. ``optax.adam(1e-3)``).
    - `steps`: the horizon: cycles per episode (the last horizon of a curriculum must not exceed it).
    - `record`: streams (or neurons) the loss reads; default: the machine's default record (every output and the
      sinks' inputs). Record only what the loss needs: it is what the backward pass keeps.
    - `l1`, `l2`: initial penalty coefficients on the trainable entries (they live in `TrainState`).
    - `clip_norm`: clip the masked gradient to this global norm (None: no clipping).
    - `curriculum`: ``((from_step, horizon), ...)``, increasing from_step, the first from 0; empty: always `steps`.
    - `batched`: inputs and data carry a leading batch axis; the loss is the batch mean.
    - `guard`: the NaN/Inf guard (raises `NonFiniteError`).
    - `remat`: rematerialisation of the scan for the backward pass (see `Machine.run`).
    - `through_self`: the NETWORK-kind output stream of an update channel linked into Self's delta (see the module
      docstring); None for ordinary training.
    - `episodes`: "reset" or "continue" (only with `through_self`).
    """

    machine: Machine
    loss: Callable[[Trace, Any], jax.Array]
    optimizer: optax.GradientTransformation
    steps: int
    record: Sequence[str] | None = None
    l1: float = 0.0
    l2: float = 0.0
    clip_norm: float | None = None
    curriculum: Sequence[tuple[int, int]] = ()
    batched: bool = False
    guard: bool = True
    remat: str = "auto"
    through_self: str | None = None
    episodes: str = "reset"

    def __post_init__(self) -> None:
        m = self.machine
        if not isinstance(m, Machine):
            raise ProgramError(f"Trainer needs a Machine (from dmm.compile), not {type(m).__name__}")
        if not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
            raise ProgramError(f"Trainer: steps (the horizon) must be a positive int, not {self.steps!r}")
        try:
            m.resolve_remat(self.remat)
        except ProgramError as e:
            raise ProgramError(f"Trainer: {e}") from None
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ProgramError(f"Trainer: clip_norm must be positive, not {self.clip_norm}")
        if self.l1 < 0 or self.l2 < 0:
            raise ProgramError("Trainer: penalty coefficients l1, l2 must be non-negative")
        curriculum = tuple((int(a), int(h)) for a, h in self.curriculum)
        if curriculum:
            starts = [a for a, _ in curriculum]
            if starts[0] != 0 or starts != sorted(set(starts)):
                raise ProgramError(f"Trainer: curriculum steps must increase from 0, got {starts}")
            bad = [h for _, h in curriculum if not 1 <= h <= self.steps]
            if bad:
                raise ProgramError(f"Trainer: curriculum horizons {bad} are outside 1..{self.steps}")
        object.__setattr__(self, "curriculum", curriculum)
        object.__setattr__(self, "record", m.record_names(self.record))
        if self.through_self is not None:
            self._check_channel()
        elif self.episodes != "reset":
            raise ProgramError("Trainer: episodes='continue' needs through_self (the running machine)")
        object.__setattr__(self, "_jit_update", jax.jit(self._update, static_argnames=("horizon",)))
        object.__setattr__(self, "_jit_evaluate", jax.jit(self._evaluate, static_argnames=("horizon",)))
        object.__setattr__(self, "_jit_cut_losses", jax.jit(self._cut_losses, static_argnames=("horizon",)))
        object.__setattr__(self, "_jit_chunk", jax.jit(self._scan_updates, static_argnames=("horizon", "k")))
        object.__setattr__(self, "_jit_many", jax.jit(self._scan_many, static_argnames=("horizon", "k")))
        object.__setattr__(self, "_jit_evaluate_many", jax.jit(self._evaluate_many, static_argnames=("horizon",)))

    def _check_channel(self) -> None:
        m, ch = self.machine, self.through_self
        lay = m.layout
        if lay.self_stream is None:
            raise ProgramError("Trainer: through_self needs a program with a Self neuron")
        if self.batched:
            raise ProgramError("Trainer: through_self trains one running machine; batched=True is not supported")
        if self.episodes not in ("reset", "continue"):
            raise ProgramError(f"Trainer: episodes must be 'reset' or 'continue', not {self.episodes!r}")
        side, k, _ = lay.locate(ch)
        if side != "out" or lay.kinds[k].name != NETWORK.name:
            raise ProgramError(f"Trainer: through_self={ch!r} must be a NETWORK-kind output port (an update channel)")
        self_name = lay.self_stream.split(".")[0]
        delta = f"{self_name}.{m.program.neuron(self_name).type.inputs[1].name}"
        accum = f"{self_name}.{m.program.neuron(self_name).type.inputs[0].name}"
        if m.weight(ch, delta) != 1.0 or m.weight(lay.self_stream, accum) != 1.0:
            raise ProgramError(
                f"Trainer: through_self needs weight-1 links {ch!r} -> {delta!r} and {lay.self_stream!r} -> {accum!r}"
            )
        if m.trainable["W"][k][m.entry(ch, delta)[1]] or m.trainable["W"][k][m.entry(lay.self_stream, accum)[1]]:
            raise ProgramError("Trainer: the update channel's and Self's own links must be hard (trainable=False)")

    # ------------------------------------------------------------------------------------------------ state
    def init(
        self, params: Params | None = None, *, key: jax.Array | None = None, mask: Params | None = None
    ) -> TrainState:
        """The training state at step 0.

        **Arguments:** `params` (default `machine.params`), `key` (PRNG key; default ``jax.random.key(0)``),
        `mask` (booleans shaped like params; default `machine.trainable`). Masked-out W entries keep their values
        (hard links); to start with links removed, zero them too (see `dmm.prune`).
        """
        m = self.machine
        params = jax.tree_util.tree_map(jnp.asarray, m.params if params is None else params)
        mask = jax.tree_util.tree_map(lambda x: jnp.asarray(x, bool), m.trainable if mask is None else mask)
        if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(mask):
            raise ProgramError("Trainer.init: the mask must have the structure of the parameters")
        for p, q in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(mask)):
            if p.shape != q.shape:
                raise ProgramError(f"Trainer.init: a mask leaf has shape {q.shape}, its parameter {p.shape}")
        key = jax.random.key(0) if key is None else key
        run = m.init_state(params) if self.through_self is not None else None
        dtype = m.dtype
        return TrainState(
            params, self.optimizer.init(params), mask, jnp.zeros((), jnp.int32), key,
            jnp.asarray(self.l1, dtype), jnp.asarray(self.l2, dtype), run,
        )

    def horizon(self, step: int) -> int:
        """The horizon in force at training step `step` (the curriculum's, else `steps`)."""
        h = self.steps
        for start, hh in self.curriculum:
            if step >= start:
                h = hh
        return h

    # ----------------------------------------------------------------------------------------------- steps
    def update(
        self, state: TrainState, inputs: Mapping[str, Any] | None = None, data: Any = None
    ) -> tuple[TrainState, Metrics]:
        """One training step (one jitted call). `inputs`: {output stream: (steps, *shape)} (with a leading batch
        axis when batched), cut to the horizon; `data`: passed to the loss. Returns the new state and the step's
        `Metrics` (measured before the update). Raises `NonFiniteError` (state unchanged) when the guard trips."""
        step = int(state.step)
        h = self.horizon(step)
        new, metrics, flags = self._jit_update(state, self.episode_inputs(inputs, h), data, horizon=h)
        if self.guard and not bool(metrics.finite):
            self._raise(f"training step {step + 1}", flags, metrics, state)
        return new, metrics

    def evaluate(
        self, state: TrainState, inputs: Mapping[str, Any] | None = None, data: Any = None, *, horizon: int | None = None
    ) -> Metrics:
        """The metrics of `state` without updating it (`grad_norm` is 0). `horizon` defaults to the one in force."""
        h = self.horizon(int(state.step)) if horizon is None else int(horizon)
        metrics, flags = self._jit_evaluate(state, self.episode_inputs(inputs, h), data, horizon=h)
        if self.guard and not bool(metrics.finite):
            self._raise(f"evaluation at step {int(state.step)}", flags, metrics, state)
        return metrics

    def cut_losses(
        self, state: TrainState, cuts: Mapping[str, Any], inputs: Mapping[str, Any] | None = None, data: Any = None
    ) -> np.ndarray:
        """The data loss of `state` with each of n sets of W entries set to zero, in one vmapped evaluation.

        `cuts`: {kind: bool array (n, *W_K.shape)}, True where variant i zeroes an entry (kinds left out: none).
        Returns a NumPy array (n,) of losses (non-finite where a variant blows up).
        """
        h = self.horizon(int(state.step))
        shapes = {k: np.shape(w) for k, w in state.params["W"].items()}
        counts = {np.shape(c)[0] for c in cuts.values()}
        if len(counts) != 1:
            raise ProgramError("cut_losses: every kind's cuts need the same leading count")
        n = counts.pop()
        full = {k: jnp.asarray(cuts[k], bool) if k in cuts else jnp.zeros((n, *s), bool) for k, s in shapes.items()}
        return np.asarray(self._jit_cut_losses(state, full, self.episode_inputs(inputs, h), data, horizon=h))

    def _cut_losses(self, state: TrainState, cuts, inputs, data, *, horizon: int):
        var = self._variables(state)

        def one(cut):
            W = {k: jnp.where(cut[k], jnp.zeros_like(w), w) for k, w in var["W"].items()}
            return self._objective({**var, "W": W}, state, inputs, data, horizon)[1][0]

        return jax.lax.map(one, cuts, batch_size=64)

    def episode_inputs(self, inputs: Mapping[str, Any] | None, h: int) -> dict[str, jax.Array]:
        out = {}
        for s, v in (inputs or {}).items():
            v = jnp.asarray(v, self.machine.dtype)
            v = v[:, :h] if self.batched else v[:h]
            out[s] = v
        if out:
            probe = {s: (v[0] if self.batched else v) for s, v in out.items()}
            self.machine.check_inputs(probe, h)
        return out

    def episode_trace(self, var: Params, start, inputs, key, h: int, *, check_finite: bool = False):
        """The recorded `Trace` of an `h`-cycle episode for parameters `var` from `start` (None: the initial state),
        and the finiteness flags (None unless `check_finite`)."""
        m = self.machine
        final, recs, flags = m.simulate(
            var, start, inputs, key, steps=h, record=self.record, remat=self.remat, check_finite=check_finite
        )
        first = jnp.zeros((), jnp.int32) if start is None else start.cycle
        return Trace(recs, {n: m.kind(n) for n in self.record}, first, final), flags

    def _episode(self, var: Params, state: TrainState, inputs, data, key, h: int):
        """Loss and finiteness flags of one episode (one batch element) for parameters `var`."""
        m = self.machine
        start = None
        if self.through_self is not None:
            if self.episodes == "reset":
                start = m.init_state(var)
            else:
                value = m.network.flatten(var["W"], jnp)
                start = m.write(state.run, m.layout.self_stream, value)
        trace, flags = self.episode_trace(var, start, inputs, key, h, check_finite=self.guard)
        final = trace.state
        loss = jnp.asarray(self.loss(trace, data))
        if loss.shape != ():
            raise ProgramError(f"Trainer: the loss must return a scalar, got shape {loss.shape}")
        return loss, (final, flags)

    def _objective(self, var: Params, state: TrainState, inputs, data, h: int):
        m = self.machine
        key = jax.random.fold_in(state.key, state.step) if m.stochastic else None
        if self.batched:
            b = jax.tree_util.tree_leaves((inputs, data))
            if not b:
                raise ProgramError("Trainer: batched=True needs inputs or data with a leading batch axis")
            n = b[0].shape[0]
            keys = None if key is None else jax.random.split(key, n)
            losses, (final, flags) = jax.vmap(
                lambda i, d, k: self._episode(var, state, i, d, k, h), in_axes=(0, 0, None if keys is None else 0)
            )(inputs, data, keys)
            loss = jnp.mean(losses)
            flags = None if flags is None else {s: jnp.all(f, axis=0) for s, f in flags.items()}
        else:
            loss, (final, flags) = self._episode(var, state, inputs, data, key, h)
        penalty = _penalty(var, state.mask, state.l1, state.l2)
        return loss + penalty.astype(loss.dtype), (loss, penalty, final, flags)

    def _variables(self, state: TrainState) -> Params:
        if self.through_self is None:
            return state.params
        m = self.machine
        return {**state.params, "W": m.matrices(state.params, state.run)}

    def _update(self, state: TrainState, inputs, data, *, horizon: int):
        m = self.machine
        var = self._variables(state)
        (_, (loss, penalty, final, flags)), grads = jax.value_and_grad(self._objective, has_aux=True)(
            var, state, inputs, data, horizon
        )
        grads = _masked(grads, state.mask)
        gnorm = optax.tree.norm(grads)
        if self.clip_norm is not None:
            scale = jnp.minimum(1.0, self.clip_norm / jnp.maximum(gnorm, 1e-30))
            grads = jax.tree_util.tree_map(lambda g: g * scale.astype(g.dtype), grads)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, var)
        updates = _masked(updates, state.mask)
        run = state.run
        if self.through_self is None:
            params = optax.apply_updates(var, updates)
        else:
            # Deliver U through the machine: the channel emits U, Self adds it one cycle later (W <- W + U).
            u = m.network.flatten(updates["W"], jnp).astype(m.dtype)
            feed = {self.through_self: jnp.stack([u, jnp.zeros_like(u)])}
            key = jax.random.fold_in(state.key, state.step) if m.stochastic else None
            run, _, _ = m.simulate(var, final, feed, key, steps=2, record=(), remat="none")
            neurons = optax.apply_updates(var["neurons"], updates["neurons"])
            params = {**state.params, "W": m.matrices(state.params, run), "neurons": neurons}
        finite = jnp.isfinite(loss) & jnp.all(jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)] or [True]))
        if flags is not None:
            finite = finite & jnp.all(jnp.asarray([jnp.all(f) for f in flags.values()]))
        new = state._replace(params=params, opt_state=opt_state, step=state.step + 1, run=run)
        metrics = Metrics(loss, penalty, gnorm, count_links(state.mask), finite)
        return new, metrics, flags

    def _evaluate(self, state: TrainState, inputs, data, *, horizon: int):
        _, (loss, penalty, _, flags) = self._objective(self._variables(state), state, inputs, data, horizon)
        finite = jnp.isfinite(loss)
        if flags is not None:
            finite = finite & jnp.all(jnp.asarray([jnp.all(f) for f in flags.values()]))
        return Metrics(loss, penalty, jnp.zeros((), loss.dtype), count_links(state.mask), finite), flags

    def _raise(self, where: str, flags, metrics: Metrics, state: TrainState) -> None:
        message = None
        if flags is not None:
            first = 0 if state.run is None or self.episodes == "reset" else int(state.run.cycle)
            error = self.machine.nonfinite_error(flags, first)
            if error is not None:
                message = f"{where}: {error}"
        if message is None and not np.isfinite(float(metrics.loss)):
            message = f"{where}: the loss is {float(metrics.loss)} although every stream was finite"
        if message is None:
            message = f"{where}: the gradient is not finite although the loss ({float(metrics.loss):.6g}) is"
        error = NonFiniteError(message)
        error.state = state  # the last finite training state, to inspect or resume from
        raise error

    # ------------------------------------------------------------------------------------------------- loops
    def fit(
        self,
        state: TrainState,
        n: int,
        inputs: Mapping[str, Any] | None = None,
        data: Any = None,
        *,
        chunk: int = 1,
        progress: bool | None = None,
        log: str | os.PathLike | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 0,
        stream: TextIO | None = None,
    ) -> tuple[TrainState, dict[str, np.ndarray]]:
        """Run `n` training steps.

        **Arguments:** `state`, `inputs`, `data` as in `update`; `chunk`: steps per jitted call (a `lax.scan` over
        updates; the results are the same as step by step, the Python overhead is paid once per chunk);
        `progress`: a progress bar on stderr (default: on for runs of 100 steps or more); `log`: a JSONL metrics
        file, one line per step, appended to; `checkpoint`, `checkpoint_every`: save the state there (see
        `dmm.save_checkpoint`) every that many steps and at the end.

        **Returns:** the final state and the history {"loss", "penalty", "grad_norm", "links"}: NumPy arrays (n,).
        """
        from dmm.files import save_checkpoint

        if checkpoint_every and checkpoint is None:
            raise ProgramError("fit: checkpoint_every needs a checkpoint path")
        if chunk < 1:
            raise ProgramError(f"fit: chunk must be at least 1, not {chunk}")
        bar = ProgressBar(n, stream=stream) if (progress if progress is not None else n >= 100) else None
        logger = MetricsLog(log) if log is not None else None
        hist: dict[str, list] = {f: [] for f in ("loss", "penalty", "grad_norm", "links")}
        t0 = time.perf_counter()
        done = 0
        try:
            while done < n:
                step = int(state.step)
                k = min(chunk, n - done, self._until_horizon_change(step))
                if checkpoint_every:
                    k = min(k, checkpoint_every - done % checkpoint_every)
                if k < chunk:
                    k = 1  # partial chunks go step by step (no extra compilation)
                if k == 1:
                    state, m = self.update(state, inputs, data)
                    ms = jax.tree_util.tree_map(lambda x: np.asarray(x)[None], m)
                else:
                    state, ms = self._chunk(state, inputs, data, k)
                rows = {"loss": ms.loss.astype(float), "penalty": ms.penalty.astype(float),
                        "grad_norm": ms.grad_norm.astype(float), "links": ms.links.astype(int)}
                for f, v in rows.items():
                    hist[f].extend(v.tolist())
                done += k
                if logger is not None:
                    seconds = round(time.perf_counter() - t0, 4)
                    for i in range(k):
                        s = step + i + 1
                        logger.write(step=s, horizon=self.horizon(s - 1), seconds=seconds,
                                     **{f: v[i].item() for f, v in rows.items()})
                if bar is not None:
                    bar.update(done, loss=float(rows["loss"][-1]), links=int(rows["links"][-1]))
                if checkpoint_every and done % checkpoint_every == 0 and done < n:
                    save_checkpoint(checkpoint, state)
        finally:
            if bar is not None:
                bar.close()
            if logger is not None:
                logger.close()
        if checkpoint is not None:
            save_checkpoint(checkpoint, state)
        return state, {f: np.asarray(v) for f, v in hist.items()}

    def _until_horizon_change(self, step: int) -> int:
        later = [start - step for start, _ in self.curriculum if start > step]
        return min(later) if later else 1 << 62

    def _chunk(self, state: TrainState, inputs, data, k: int) -> tuple[TrainState, Metrics]:
        h = self.horizon(int(state.step))
        new, ms = self._jit_chunk(state, self.episode_inputs(inputs, h), data, horizon=h, k=k)
        if self.guard:
            bad = np.flatnonzero(~np.asarray(ms.finite))
            if len(bad):
                # the scan froze the state before the failing step: redo that step alone for the diagnosis
                self.update(new, inputs, data)
        return new, jax.tree_util.tree_map(np.asarray, ms)

    def _scan_updates(self, state: TrainState, inputs, data, *, horizon: int, k: int):
        def body(s, _):
            new, me, _ = self._update(s, inputs, data, horizon=horizon)
            if self.guard:
                new = jax.lax.cond(me.finite, lambda: new, lambda: s)
            return new, me

        return jax.lax.scan(body, state, None, length=k)

    # ----------------------------------------------------------------------------------- several states at once
    def fit_many(
        self, states: TrainState, n: int, inputs: Mapping[str, Any] | None = None, data: Any = None, *, chunk: int = 100
    ) -> tuple[TrainState, dict[str, np.ndarray]]:
        """Run `n` training steps on each of K independent training states at once (one `vmap`ped, jitted call per
        `chunk` steps): different seeds, or different trial cuts of one network.

        `states` is a `TrainState` whose every leaf has a leading axis K (see `stack_states`); all members share
        `inputs` and `data` and take the same number of steps (their step counts must agree). A member whose
        episode, loss or gradient becomes non-finite is frozen at its last finite state and reported in
        ``history["finite"]`` (no exception: a failing member is an outcome, not an error).

        **Returns:** the new stacked states and {"loss", "penalty", "grad_norm", "links", "finite"}: NumPy arrays
        (K, n) (the metrics of each member's steps, as in `fit`).
        """
        if chunk < 1:
            raise ProgramError(f"fit_many: chunk must be at least 1, not {chunk}")
        steps = np.unique(np.asarray(states.step))
        if steps.size != 1:
            raise ProgramError(f"fit_many: the members' step counts differ ({steps.tolist()})")
        hist: dict[str, list] = {f: [] for f in ("loss", "penalty", "grad_norm", "links", "finite")}
        done, step = 0, int(steps[0])
        while done < n:
            h = self.horizon(step)
            k = min(chunk, n - done, self._until_horizon_change(step))
            states, ms = self._jit_many(states, self.episode_inputs(inputs, h), data, horizon=h, k=k)
            for f, rows in hist.items():
                rows.append(np.asarray(getattr(ms, f)))
            done += k
            step += k
        return states, {f: np.concatenate(v, axis=1) if v else np.zeros((0, 0)) for f, v in hist.items()}

    def evaluate_many(
        self, states: TrainState, inputs: Mapping[str, Any] | None = None, data: Any = None, *, horizon: int | None = None
    ) -> np.ndarray:
        """The data loss of each of K stacked states (see `fit_many`), a NumPy array (K,) (NaN where non-finite)."""
        h = self.horizon(int(np.max(np.asarray(states.step)))) if horizon is None else int(horizon)
        return np.asarray(self._jit_evaluate_many(states, self.episode_inputs(inputs, h), data, horizon=h), np.float64)

    def _scan_many(self, states: TrainState, inputs, data, *, horizon: int, k: int):
        def one(s):
            def body(s, _):
                new, me, _ = self._update(s, inputs, data, horizon=horizon)
                new = jax.tree_util.tree_map(lambda a, b: jnp.where(me.finite, a, b), new, s)
                return new, me

            return jax.lax.scan(body, s, None, length=k)

        return jax.vmap(one)(states)

    def _evaluate_many(self, states: TrainState, inputs, data, *, horizon: int):
        def one(s):
            me, _ = self._evaluate(s, inputs, data, horizon=horizon)
            return jnp.where(me.finite, me.loss, jnp.nan)

        return jax.vmap(one)(states)


def stack_states(states: Sequence[TrainState]) -> TrainState:
    """K training states (of one trainer) as one state whose every leaf has a leading axis K (for `fit_many`)."""
    if not states:
        raise ProgramError("stack_states: no states")
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *states)


def unstack_state(states: TrainState, i: int) -> TrainState:
    """Member `i` of stacked training states (see `stack_states`)."""
    return jax.tree_util.tree_map(lambda x: x[i], states)


# ------------------------------------------------------------------------------------------ progress and logs
class ProgressBar:
    """A plain-text progress bar on stderr: ``step 120/2500 [###.......] loss 3.21e+00 links 1486 250 it/s ETA 9s``.

    On a terminal it redraws one line at most every `every` seconds; otherwise it prints a line at every tenth of
    the run. `update(done, **fields)` shows the fields (floats in scientific notation); `close()` ends the line.
    """

    def __init__(self, total: int, *, stream: TextIO | None = None, every: float = 0.2, width: int = 20, label: str = "step"):
        self.total = max(int(total), 1)
        self.stream = sys.stderr if stream is None else stream
        self.every, self.width, self.label = every, width, label
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self.last = -math.inf
        self.next_tenth = 1
        self.line = ""

    def _render(self, done: int, fields: Mapping[str, Any]) -> str:
        frac = min(done / self.total, 1.0)
        filled = round(frac * self.width)
        dt = time.perf_counter() - self.t0
        rate = done / dt if dt > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else 0.0
        parts = [f"{self.label} {done}/{self.total} [{'#' * filled}{'.' * (self.width - filled)}]"]
        for k, v in fields.items():
            parts.append(f"{k} {v:.3e}" if isinstance(v, float) else f"{k} {v}")
        parts.append(f"{rate:.1f} it/s ETA {eta:.0f}s")
        return " ".join(parts)

    def update(self, done: int, **fields: Any) -> None:
        now = time.perf_counter()
        if self.tty:
            if now - self.last >= self.every or done >= self.total:
                self.last = now
                line = self._render(done, fields)
                pad = max(len(self.line) - len(line), 0)
                self.stream.write("\r" + line + " " * pad)
                self.stream.flush()
                self.line = line
        elif done * 10 >= self.next_tenth * self.total:
            while done * 10 >= self.next_tenth * self.total:
                self.next_tenth += 1
            self.stream.write(self._render(done, fields) + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and self.line:
            self.stream.write("\n")
            self.stream.flush()
            self.line = ""


class MetricsLog:
    """Appends one JSON object per line to `path` (JSONL): ``MetricsLog(path).write(step=1, loss=0.5)``."""

    def __init__(self, path: str | os.PathLike):
        self.path = path
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115  (kept open across writes; see close)

    def write(self, **record: Any) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> MetricsLog:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
