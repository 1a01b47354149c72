"""Training network matrices (and neuron parameters) by backpropagation through time, in the optax style.

A `Trainer` holds what does not change during training: the `Machine`, a loss on traces, an optax
`GradientTransformation`, the horizon (cycles per episode) and the options. A `TrainState` (a NamedTuple pytree)
holds everything that does: parameters, optimizer state, the trainable mask, the step, the PRNG key, the penalty
coefficients and, when training through Self, the running machine state. One training step is ONE jitted call:

    episode  run `horizon` cycles (one `lax.scan`) from the initial state, record the streams the loss reads
    loss     loss(trace, data) + l1·Σ mask·|p| + l2·Σ mask·p²       (mean over the batch when batched)
    update   g = mask·∇loss, g = clip_by_global_norm(g) (optional), (u, opt) = optimizer.update(g, opt, p),
             p += mask·u

The mask is a boolean pytree shaped like the parameters: True entries train, False entries are fixed ("hard
links", and the links removed by pruning, which are also held at zero). By default it is `machine.trainable` (the
program's `trainable=True` links and the neuron parameters their types list as trainable).

Example:

    trainer = dmm.train.Trainer(machine, loss, optax.adam(1e-3), steps=140, l1=1e-3)
    state = trainer.init(key=jax.random.key(0))
    state, history = trainer.fit(state, 1000, data=targets)

The loss is ``loss(trace, data) -> scalar``: `trace` is a `dmm.Trace` of the episode (arrays of shape
(horizon, *kind.shape) for the recorded streams, `trace.state` the final state) and `data` whatever the caller
passes (targets, say). With ``batched=True`` every array of `inputs` and `data` has a leading batch axis, the episode
is `vmap`ped over it, and the loss is the batch mean.

With a *curriculum* ``((0, 35), (500, 70), (1000, 140))`` the horizon is 35 cycles from step 0, 70 from step 500
and 140 from step 1000 (inputs are cut to the horizon; the loss sees a trace of that length). Each horizon compiles
once.

*Training through Self* (``through_self="upd.out"``, ``episodes="reset"`` or ``"continue"``): the matrix being
trained is the one the running machine holds in Self's output, and each update is delivered through the machine
(see `dmm.train.through_self`).

Streams of batches (``fit(..., batches=...)``): a Python iterable of ``(inputs, data)`` pairs consumed on the host,
or a batch function ``(key, step) -> (inputs, data)`` (a `dmm.train.BatchFn`) that runs inside the jitted step; see
`dmm.train.loop`. Held-out evaluation every k steps (``eval_every``, ``eval_batch``) reports the loss and the
trainer's `metrics` (``{"accuracy": fn(trace, data) -> scalar}``) on an evaluation batch.

Data-parallel training (``devices=jax.devices()``, with ``batched=True``): the batch axis of inputs and data is split
over a 1-D `jax.sharding.Mesh` of the devices (axis ``"batch"``), the training state is replicated, and jit
(GSPMD) partitions the step; the results equal one device's to float rounding.

NaN/Inf guard (``guard=True``): every episode checks every stream at every cycle; a non-finite stream, loss or
gradient stops training with `NonFiniteError` naming the step, the first cycle and the stream; the error's `state`
attribute holds the last finite `TrainState` (the one before the failing step), also when `fit` was running many
steps.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dmm import Machine, NonFiniteError, Params, ProgramError, State, Trace

from . import loop
from .callbacks import Callback, LogMetrics, SaveCheckpoints, ShowProgress
from .state import Metrics, TrainState, count_links
from .through_self import SelfCarrier


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


def _all_finite(finite: jax.Array, flags: Mapping[str, jax.Array] | None) -> jax.Array:
    """`finite` and every stream flag of `simulate`'s ``check_finite`` (None: no flags)."""
    if flags is None:
        return finite
    return finite & jnp.all(jnp.asarray([jnp.all(f) for f in flags.values()]))


BATCH_AXIS = "batch"
"""The name of the mesh axis the batch is split over when a `Trainer` has `devices`."""

OPTAX_PROMOTION = jax.numpy_dtype_promotion("standard")
"""The optimizers run under JAX's standard dtype promotion (optax mixes Python scalars and int32 step counts with the
parameters' dtype), so a Trainer also works where a user runs with ``jax_numpy_dtype_promotion="strict"``; the
machine's own code is strict-clean."""


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
    """Trains a machine's parameters (see the module docstring).

    **Arguments:**

    - `machine`: the compiled `Machine`.
    - `loss`: ``loss(trace, data) -> scalar``; `trace` holds the `record`ed streams of one episode.
    - `optimizer`: any optax `GradientTransformation` (e.g. ``optax.adam(1e-3)``); `TrainState.opt_state` is its
      state.
    - `steps`: the horizon: cycles per episode, a positive int (the last horizon of a curriculum must not exceed it).
    - `record`: streams (or neurons) the loss reads; default: the machine's default record (every output and the
      sinks' inputs). Record only what the loss needs: it is what the backward pass keeps.
    - `l1`, `l2`: initial penalty coefficients on the trainable entries, non-negative floats (they live in
      `TrainState`).
    - `clip_norm`: clip the masked gradient to this global norm (`optax.clip_by_global_norm` before the optimizer;
      it keeps no state, so the optimizer state is the optimizer's own), a positive float; None: no clipping.
    - `curriculum`: ``((from_step, horizon), ...)`` of ints, increasing from_step, the first from 0; empty: always
      `steps`.
    - `batched`: inputs and data carry a leading batch axis; the loss is the batch mean.
    - `guard`: the NaN/Inf guard (raises `NonFiniteError`).
    - `remat`: rematerialisation of the scan for the backward pass (see `Machine.run`).
    - `through_self`: the NETWORK-kind output stream of an update channel linked into Self's delta (see
      `dmm.train.through_self`); None for ordinary training.
    - `episodes`: "reset" or "continue" (only with `through_self`).
    - `metrics`: ``{name: fn(trace, data) -> scalar}`` measured (batch mean, like the loss) on evaluation episodes
      (`measure`, and ``fit``'s ``eval_every``); names are identifiers other than "loss".
    - `devices`: None (default: no sharding), or a non-empty sequence of `jax.Device`s (e.g. ``jax.devices()``):
      data-parallel training over a 1-D mesh of them (needs `batched`; the batch size must be divisible by their
      number).
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
    metrics: Mapping[str, Callable[[Trace, Any], jax.Array]] = dataclasses.field(default_factory=dict)
    devices: Sequence[Any] | None = None

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
        carrier = None
        if self.through_self is not None:
            carrier = SelfCarrier(m, self.through_self, self.episodes, batched=self.batched)
        elif self.episodes != "reset":
            raise ProgramError("Trainer: episodes='continue' needs through_self (the running machine)")
        object.__setattr__(self, "_carrier", carrier)
        clip = optax.identity() if self.clip_norm is None else optax.clip_by_global_norm(self.clip_norm)
        object.__setattr__(self, "_clip", clip)
        object.__setattr__(self, "_jitted", {})
        metrics = dict(self.metrics or {})
        for name, fn in metrics.items():
            if not isinstance(name, str) or not name.isidentifier() or name == "loss":
                raise ProgramError(f"Trainer: metric name {name!r} must be an identifier other than 'loss'")
            if not callable(fn):
                raise ProgramError(f"Trainer: metric {name!r} must be a function (trace, data) -> scalar")
        object.__setattr__(self, "metrics", metrics)
        mesh = None
        if self.devices is not None:
            devices = tuple(self.devices)
            if not self.batched:
                raise ProgramError("Trainer: devices (data-parallel sharding of the batch axis) needs batched=True")
            if not devices or not all(isinstance(d, jax.Device) for d in devices):
                raise ProgramError(f"Trainer: devices must be a non-empty sequence of jax.Device, not {self.devices!r}")
            if len(set(devices)) != len(devices):
                raise ProgramError("Trainer: devices lists a device twice")
            object.__setattr__(self, "devices", devices)
            mesh = Mesh(np.asarray(devices, dtype=object), (BATCH_AXIS,))
        object.__setattr__(self, "_mesh", mesh)

    def jitted(self, fn: Callable, **jit_kwargs: Any) -> Callable:
        """``jax.jit(functools.partial(fn, self), **jit_kwargs)``, made once per trainer, `fn` and options and kept
        with the trainer (the layers above use it to compile their own pure functions of a trainer once)."""
        key = (fn, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in jit_kwargs.items())))
        if key not in self._jitted:
            self._jitted[key] = jax.jit(functools.partial(fn, self), **jit_kwargs)
        return self._jitted[key]

    # --------------------------------------------------------------------------------------------- sharding
    @property
    def mesh(self) -> Mesh | None:
        """The 1-D `jax.sharding.Mesh` (axis ``"batch"``) over `devices`, or None without `devices`."""
        return self._mesh

    def _batch_sharding(self, tree: Any, axis: int, where: str) -> NamedSharding:
        n = len(self.devices)
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
            shape = np.shape(x)
            if len(shape) <= axis or shape[axis] % n:
                size = shape[axis] if len(shape) > axis else "missing"
                name = jax.tree_util.keystr(path)
                raise ProgramError(
                    f"{where}: the batch axis of {name} (size {size}) is not divisible by the {n} devices of the mesh"
                )
        return NamedSharding(self._mesh, PartitionSpec(*([None] * axis), BATCH_AXIS))

    def shard_batch(self, inputs: Mapping[str, Any] | None, data: Any, *, axis: int = 0) -> tuple[Any, Any]:
        """`inputs` and `data` placed with their batch axis (`axis`, an int: 0, or 1 for a stack of batches) split
        over the mesh (host call; unchanged without `devices`). Raises `ProgramError` naming the leaf
        (``['inputs']['x.out']``, ``['data']...``) whose batch size is not divisible by the number of devices."""
        if self._mesh is None:
            return inputs, data
        tree = {"inputs": inputs, "data": data}
        sharding = self._batch_sharding(tree, axis, "Trainer")
        out = jax.device_put(tree, sharding)
        return out["inputs"], out["data"]

    def constrain_batch(self, inputs: Mapping[str, Any] | None, data: Any) -> tuple[Any, Any]:
        """Inside jit: `inputs` and `data` (a generated batch, batch axis 0) constrained to be split over the mesh
        (`jax.lax.with_sharding_constraint`); unchanged without `devices`."""
        if self._mesh is None:
            return inputs, data
        tree = {"inputs": inputs, "data": data}
        out = jax.lax.with_sharding_constraint(tree, self._batch_sharding(tree, 0, "Trainer: the batch function"))
        return out["inputs"], out["data"]

    def replicate(self, state: TrainState) -> TrainState:
        """`state` replicated on every device of the mesh (host call; unchanged without `devices`)."""
        if self._mesh is None:
            return state
        return jax.device_put(state, NamedSharding(self._mesh, PartitionSpec()))

    # ------------------------------------------------------------------------------------------------ state
    def init(
        self, params: Params | None = None, *, key: jax.Array | None = None, mask: Params | None = None
    ) -> TrainState:
        """The training state at step 0.

        **Arguments:** `params` (a params pytree, default `machine.params`), `key` (PRNG key; default
        ``jax.random.key(0)``), `mask` (booleans shaped like params; default `machine.trainable`). Masked-out W
        entries keep their values (hard links); to start with links removed, zero them too (see
        `dmm.sparsify.prune`).
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
        run = None if self._carrier is None else self._carrier.init(params)
        dtype = m.dtype
        with OPTAX_PROMOTION:
            opt_state = self.optimizer.init(params)
        return TrainState(
            params, opt_state, mask, jnp.zeros((), jnp.int32), key,
            jnp.asarray(self.l1, dtype), jnp.asarray(self.l2, dtype), run,
        )

    def horizon(self, step: int) -> int:
        """The horizon (int) in force at training step `step` (an int): the curriculum's, else `steps`."""
        h = self.steps
        for start, hh in self.curriculum:
            if step >= start:
                h = hh
        return h

    def variables(self, state: TrainState) -> Params:
        """The parameters in force for `state`: ``state.params``, or through Self the matrix the running machine
        holds with the neuron parameters of ``state.params``."""
        if self._carrier is None:
            return state.params
        return self._carrier.variables(state.params, state.run)

    # ------------------------------------------------------------------------------------------- episodes
    def episode_inputs(self, inputs: Mapping[str, Any] | None, h: int) -> dict[str, jax.Array]:
        """`inputs` ({output stream: array (steps, *shape)}, with a leading batch axis when batched) in the
        machine's dtype, cut to `h` cycles and checked against the machine."""
        out = {}
        for s, v in (inputs or {}).items():
            v = jnp.asarray(v, self.machine.dtype)
            v = v[:, :h] if self.batched else v[:h]
            out[s] = v
        if out:
            probe = {s: (v[0] if self.batched else v) for s, v in out.items()}
            self.machine.check_inputs(probe, h)
        return out

    def episode_trace(
        self, var: Params, start: State | None, inputs: Mapping[str, jax.Array], key: jax.Array | None, h: int, *,
        check_finite: bool = False,
    ) -> tuple[Trace, Any]:
        """The recorded `Trace` of an `h`-cycle episode (pure) for parameters `var` from `start` (None: the initial
        state), with `inputs` as `episode_inputs` returns them and `key` the PRNG key (None for deterministic
        machines); and the finiteness flags (None unless `check_finite`)."""
        m = self.machine
        final, recs, flags = m.simulate(
            var, start, inputs, key, steps=h, record=self.record, remat=self.remat, check_finite=check_finite
        )
        first = jnp.zeros((), jnp.int32) if start is None else start.cycle
        return Trace(recs, {n: m.kind(n) for n in self.record}, first, final), flags

    def _key(self, state: TrainState) -> jax.Array | None:
        return jax.random.fold_in(state.key, state.step) if self.machine.stochastic else None

    def _episode(self, var: Params, state: TrainState, inputs, data, key, h: int, *, metrics: bool = False):
        """Loss and (final state, finiteness flags) of one episode (one batch element) for parameters `var`; with
        `metrics`, the loss is ``{"loss": loss, name: metric}``."""
        start = None if self._carrier is None else self._carrier.start(var, state.run)
        trace, flags = self.episode_trace(var, start, inputs, key, h, check_finite=self.guard)
        loss = jnp.asarray(self.loss(trace, data))
        if loss.shape != ():
            raise ProgramError(f"Trainer: the loss must return a scalar, got shape {loss.shape}")
        if metrics:
            values = {"loss": loss}
            for name, fn in self.metrics.items():
                v = jnp.asarray(fn(trace, data))
                if v.shape != ():
                    raise ProgramError(f"Trainer: metric {name!r} must return a scalar, got shape {v.shape}")
                values[name] = v
            loss = values
        return loss, (trace.state, flags)

    def _over_batch(self, episode: Callable, inputs, data, key):
        """``episode(inputs, data, key) -> (scalars, (final, flags))`` over the batch when batched: the batch mean
        of the scalars (a pytree), the final states (with the batch axis) and the flags of all members."""
        if not self.batched:
            return episode(inputs, data, key)
        b = jax.tree_util.tree_leaves((inputs, data))
        if not b:
            raise ProgramError("Trainer: batched=True needs inputs or data with a leading batch axis")
        n = b[0].shape[0]
        keys = None if key is None else jax.random.split(key, n)
        values, (final, flags) = jax.vmap(episode, in_axes=(0, 0, None if keys is None else 0))(inputs, data, keys)
        values = jax.tree_util.tree_map(jnp.mean, values)
        flags = None if flags is None else {s: jnp.all(f, axis=0) for s, f in flags.items()}
        return values, (final, flags)

    def objective(
        self, var: Params, state: TrainState, inputs: Mapping[str, jax.Array], data: Any, horizon: int
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array, State, Any]]:
        """The objective of one step (pure; differentiable in `var`).

        **Arguments:** `var`: the parameters in force (as `variables` returns them, or a variant); `state`: the
        `TrainState` (mask, step, key, penalties, running machine); `inputs`: as `episode_inputs` returns them;
        `data`: passed to the loss; `horizon`: cycles (an int).

        **Returns:** ``(loss + penalty, (loss, penalty, final state, finiteness flags or None))``: the data loss
        (batch mean) and the penalty are scalars.
        """
        loss, (final, flags) = self._over_batch(
            lambda i, d, k: self._episode(var, state, i, d, k, horizon), inputs, data, self._key(state)
        )
        penalty = _penalty(var, state.mask, state.l1, state.l2)
        return loss + penalty.astype(loss.dtype), (loss, penalty, final, flags)

    # ------------------------------------------------------------------------------------------- pure steps
    def train_step(
        self, state: TrainState, inputs: Mapping[str, jax.Array], data: Any, *, horizon: int
    ) -> tuple[TrainState, Metrics, Any]:
        """One training step (pure; `update` is its jitted, guarded form).

        **Arguments:** `state`; `inputs` as `episode_inputs` returns them; `data`; `horizon` (an int).

        **Returns:** the new state, the step's `Metrics` (measured before the update) and the finiteness flags
        (None without the guard).
        """
        var = self.variables(state)
        (_, (loss, penalty, final, flags)), grads = jax.value_and_grad(self.objective, has_aux=True)(
            var, state, inputs, data, horizon
        )
        grads = _masked(grads, state.mask)
        gnorm = optax.tree.norm(grads)
        with OPTAX_PROMOTION:
            clipped, _ = self._clip.update(grads, self._clip.init(var))
            updates, opt_state = self.optimizer.update(clipped, state.opt_state, var)
        updates = _masked(updates, state.mask)
        run = state.run
        if self._carrier is None:
            params = optax.apply_updates(var, updates)
        else:
            run, params = self._carrier.deliver(var, state.params, final, updates, self._key(state))
        leaves = [jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]
        finite = _all_finite(jnp.isfinite(loss) & jnp.all(jnp.asarray(leaves or [True])), flags)
        new = state._replace(params=params, opt_state=opt_state, step=state.step + 1, run=run)
        return new, Metrics(loss, penalty, gnorm, count_links(state.mask), finite), flags

    def eval_step(self, state: TrainState, inputs: Mapping[str, jax.Array], data: Any, *, horizon: int):
        """The `Metrics` of `state` (pure; `grad_norm` 0) and the finiteness flags; arguments as `train_step`."""
        _, (loss, penalty, _, flags) = self.objective(self.variables(state), state, inputs, data, horizon)
        finite = _all_finite(jnp.isfinite(loss), flags)
        return Metrics(loss, penalty, jnp.zeros((), loss.dtype), count_links(state.mask), finite), flags

    def measure_step(self, state: TrainState, inputs: Mapping[str, jax.Array], data: Any, *, horizon: int):
        """The evaluation values of `state` (pure): ``{"loss": data loss, name: metric for each of `metrics`}``
        (float scalars, batch means when batched), whether the loss and streams were finite (bool scalar), and the
        finiteness flags; arguments as `train_step`."""
        var = self.variables(state)
        values, (_, flags) = self._over_batch(
            lambda i, d, k: self._episode(var, state, i, d, k, horizon, metrics=True), inputs, data, self._key(state)
        )
        return values, _all_finite(jnp.isfinite(values["loss"]), flags), flags

    def _evaluate_many(self, states: TrainState, inputs, data, *, horizon: int):
        def one(s):
            metrics, _ = self.eval_step(s, inputs, data, horizon=horizon)
            return jnp.where(metrics.finite, metrics.loss, jnp.nan)

        return jax.vmap(one)(states)

    # ------------------------------------------------------------------------------------------ host calls
    def update(
        self, state: TrainState, inputs: Mapping[str, Any] | None = None, data: Any = None
    ) -> tuple[TrainState, Metrics]:
        """One training step (one jitted call). `inputs`: {output stream: (steps, *shape)} (with a leading batch
        axis when batched), cut to the horizon; `data`: passed to the loss. Returns the new state and the step's
        `Metrics` (measured before the update). Raises `NonFiniteError` (state unchanged) when the guard trips. With
        `devices`, the state is replicated over them and the batch axis of inputs and data split (`shard_batch`)."""
        step = int(state.step)
        h = self.horizon(step)
        fn = self.jitted(Trainer.train_step, static_argnames=("horizon",))
        state = self.replicate(state)
        new, metrics, flags = fn(state, *self.shard_batch(self.episode_inputs(inputs, h), data), horizon=h)
        if self.guard and not bool(metrics.finite):
            self._raise(f"training step {step + 1}", flags, metrics, state)
        return new, metrics

    def evaluate(
        self, state: TrainState, inputs: Mapping[str, Any] | None = None, data: Any = None, *, horizon: int | None = None
    ) -> Metrics:
        """The metrics of `state` without updating it (`grad_norm` is 0). `horizon` (an int) defaults to the one in
        force."""
        h = self.horizon(int(state.step)) if horizon is None else int(horizon)
        fn = self.jitted(Trainer.eval_step, static_argnames=("horizon",))
        state = self.replicate(state)
        metrics, flags = fn(state, *self.shard_batch(self.episode_inputs(inputs, h), data), horizon=h)
        if self.guard and not bool(metrics.finite):
            self._raise(f"evaluation at step {int(state.step)}", flags, metrics, state)
        return metrics

    def measure(
        self, state: TrainState, inputs: Mapping[str, Any] | None = None, data: Any = None, *, horizon: int | None = None
    ) -> dict[str, float]:
        """The data loss and the trainer's `metrics` of `state` on one evaluation batch, without updating it:
        ``{"loss": float, name: float, ...}`` (batch means when batched; the loss equals ``evaluate(...).loss``).
        `inputs`, `data`, `horizon` as in `evaluate`; raises `NonFiniteError` when the guard trips."""
        h = self.horizon(int(state.step)) if horizon is None else int(horizon)
        fn = self.jitted(Trainer.measure_step, static_argnames=("horizon",))
        state = self.replicate(state)
        values, finite, flags = fn(state, *self.shard_batch(self.episode_inputs(inputs, h), data), horizon=h)
        if self.guard and not bool(finite):
            loss = values["loss"]
            self._raise(f"evaluation at step {int(state.step)}", flags, Metrics(loss, loss, loss, loss, finite), state)
        return {name: float(v) for name, v in values.items()}

    def evaluate_many(
        self, states: TrainState, inputs: Mapping[str, Any] | None = None, data: Any = None, *, horizon: int | None = None
    ) -> np.ndarray:
        """The data loss of each of K stacked states (see `fit_many`), a float64 NumPy array (K,) (NaN where
        non-finite)."""
        h = self.horizon(int(np.max(np.asarray(states.step)))) if horizon is None else int(horizon)
        fn = self.jitted(Trainer._evaluate_many, static_argnames=("horizon",))
        return np.asarray(fn(states, self.episode_inputs(inputs, h), data, horizon=h), np.float64)

    def _raise(self, where: str, flags, metrics: Metrics, state: TrainState) -> None:
        message = None
        if flags is not None:
            first = 0 if self._carrier is None else self._carrier.first_cycle(state.run)
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
        batches: Any = None,
        chunk: int = 1,
        eval_every: int = 0,
        eval_batch: Any = None,
        eval_key: jax.Array | None = None,
        progress: bool | None = None,
        log: str | os.PathLike | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 0,
        stream: TextIO | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> tuple[TrainState, dict[str, np.ndarray]]:
        """Run `n` (an int) training steps (`dmm.train.loop.fit`).

        **Arguments:** `state`, `inputs`, `data` as in `update` (the same at every step), or instead `batches`: a
        batch function ``(key, step) -> (inputs, data)`` run inside the jitted step (a `dmm.train.BatchFn` or any
        callable), or an iterable of ``(inputs, data)`` pairs, one per step (see `dmm.train.loop`); `chunk` (int):
        steps per jitted call (a `lax.scan` over updates; the results are the same as step by step, the Python
        overhead is paid once per chunk; an iterator's pairs are stacked for it); `eval_every` (int, 0: never)
        and `eval_batch` (an ``(inputs, data)`` pair, or a function ``key -> (inputs, data)`` called once with
        `eval_key`, default derived from the state's key): the loss and `metrics` on that batch after every step
        count divisible by `eval_every`; `progress`: a progress bar on `stream` (default stderr; default: on for
        runs of 100 steps or more); `log`: a JSONL metrics file, one line per step (and one per evaluation),
        appended to; `checkpoint`, `checkpoint_every` (int): save the state there (see
        `dmm.files.save_checkpoint`) every that many steps and at the end; `callbacks`: more
        `dmm.train.callbacks.Callback`s. With `devices`, the state is replicated and the batches split over them.

        **Returns:** the final state and the history {"loss", "penalty", "grad_norm", "links"}: NumPy arrays (n,)
        (fewer when an iterator of batches ends early); with `eval_every` also "eval_step" (int (E,)),
        "eval_loss" and "eval_<metric>" (float64 (E,)).
        """
        if checkpoint_every and checkpoint is None:
            raise ProgramError("fit: checkpoint_every needs a checkpoint path")
        if chunk < 1:
            raise ProgramError(f"fit: chunk must be at least 1, not {chunk}")
        own: list[Callback] = []
        if progress if progress is not None else n >= 100:
            own.append(ShowProgress(n, stream))
        if log is not None:
            own.append(LogMetrics(log))
        if checkpoint is not None:
            own.append(SaveCheckpoints(checkpoint, checkpoint_every))
        return loop.fit(self, state, n, inputs, data, batches=batches, chunk=chunk, eval_every=eval_every,
                        eval_batch=eval_batch, eval_key=eval_key, callbacks=[*own, *callbacks])

    def fit_many(
        self, states: TrainState, n: int, inputs: Mapping[str, Any] | None = None, data: Any = None, *, chunk: int = 100
    ) -> tuple[TrainState, dict[str, np.ndarray]]:
        """Run `n` (an int) training steps on each of K independent training states at once (one `vmap`ped, jitted
        call per `chunk` steps): different seeds, or different trial cuts of one network (`dmm.train.loop.fit_many`).

        `states` is a `TrainState` whose every leaf has a leading axis K (see `stack_states`); all members share
        `inputs` and `data` and take the same number of steps (their step counts must agree). A member whose
        episode, loss or gradient becomes non-finite is frozen at its last finite state and reported in
        ``history["finite"]`` (no exception: a failing member is an outcome, not an error).

        **Returns:** the new stacked states and {"loss", "penalty", "grad_norm", "links", "finite"}: NumPy arrays
        (K, n) (the metrics of each member's steps, as in `fit`).
        """
        return loop.fit_many(self, states, n, inputs, data, chunk=chunk)
