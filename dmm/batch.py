"""Batches of machines: many runs of one compiled program in one call, sharded across devices.

`run_batch` runs B instances of a `Machine` that differ in their parameters, initial states, external inputs or
PRNG keys, as one jitted `vmap` of `Machine.simulate`. Which arguments are batched is read from their shapes: an
array shaped like the machine's own is shared by every instance, the same with a leading axis of size B holds one
value per instance (this is decided leaf by leaf, so a batch may, for example, vary W and share the neuron
parameters). `stack_trees` builds such a batch from a list of pytrees.

When several devices are available (`jax.devices()`: GPUs, TPU cores, or forced host devices) the batch axis is
sharded across them with a `NamedSharding` over a one-axis mesh, and shared arguments are replicated; instances
never talk to each other, so there is no traffic between devices and the results equal the single-device run. A
batch whose size does not divide by the number of devices is padded with copies of its last instance, which are
dropped from the result. With several processes (`jax.distributed.initialize()`), the mesh spans every process's
devices and each process gets the whole result back (see ``docs/scaling.md``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .errors import ProgramError
from .machine import Machine, Params, State, check_steps
from .remat import Remat
from .trace import Recorded, Trace


AXIS = "batch"
"""The name of the mesh axis the batch is sharded over."""


@jax.tree_util.register_pytree_node_class
class BatchTrace(Recorded):
    """The recorded streams of a batch of runs.

    ``batch["neuron.port"]`` is an array of shape ``(B, steps, *kind.shape)``: row ``[b, c - 1 - first_cycle[b]]``
    holds cycle c of instance b (NumPy arrays outside JAX transformations, traced arrays under them; a BatchTrace is
    a pytree). `instance(b)` is instance b's own `Trace`, to read, plot or save like any other.

    **Attributes:** `size` (B), `steps`, `names`, `kinds` ({stream: Kind}), `first_cycle` (int array (B,): cycles
    done before the run, per instance), `state` (the final `State`, every leaf with a leading batch axis: pass it
    back as ``state=`` to continue the batch).
    """

    @property
    def size(self) -> int:
        """B, the number of instances."""
        return int(np.shape(self.first_cycle)[0])

    @property
    def steps(self) -> int:
        """The number of cycles recorded per instance."""
        return int(self[self.names[0]].shape[1]) if self.names else 0

    def instance(self, b: int) -> Trace:
        """The `Trace` of instance `b` (its arrays, first cycle and final state)."""
        if not -self.size <= b < self.size:
            raise IndexError(f"instance {b} of a batch of {self.size}")
        state = None if self.state is None else jax.tree_util.tree_map(lambda a: a[b], self.state)
        first = self.first_cycle[b]
        return Trace({n: self[n][b] for n in self.names}, self.kinds, int(first) if _concrete(first) else first, state)

    def __repr__(self) -> str:
        return f"BatchTrace({self.size} instances x {self.steps} cycles, streams {self.names[:6]}{'...' if len(self.names) > 6 else ''})"


def stack_trees(trees: Sequence[Any]) -> Any:
    """Stack a list of pytrees of one structure (parameters, states, input dicts) along a new leading batch axis.

    Example: ``dmm.stack_trees([m.set_weights({("a.out", "b.in"): w}) for w in (0.5, 1.0, 2.0)])`` is a batch of
    three parameter sets for `run_batch`.
    """
    trees = list(trees)
    if not trees:
        raise ProgramError("stack_trees needs at least one tree")
    structure = jax.tree_util.tree_structure(trees[0])
    for i, t in enumerate(trees[1:], 1):
        if jax.tree_util.tree_structure(t) != structure:
            raise ProgramError(f"stack_trees: tree {i} has a different structure from tree 0")
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


class _Axes:
    """A hashable wrapper for a pytree of vmap axes (a static argument of the jitted batch function)."""

    def __init__(self, tree: Any):
        self.tree = tree
        leaves, treedef = jax.tree_util.tree_flatten(tree, is_leaf=lambda a: a is None)
        self._key = (tuple(leaves), treedef)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Axes) and self._key == other._key


def _concrete(tree: Any) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


def _axes(name: str, tree: Any, ref: Any) -> tuple[Any, set[int]]:
    """Per-leaf vmap axes of `tree` against the unbatched shapes `ref` (0: batched, None: shared) and the sizes seen."""
    if jax.tree_util.tree_structure(tree) != jax.tree_util.tree_structure(ref):
        raise ProgramError(
            f"{name} does not have the structure of the machine's {name} "
            f"({jax.tree_util.tree_structure(tree)} vs {jax.tree_util.tree_structure(ref)})"
        )
    sizes: set[int] = set()

    def one(path, leaf, r):
        shape, want = tuple(np.shape(leaf)), tuple(r.shape)
        if shape == want:
            return None
        if len(shape) == len(want) + 1 and shape[1:] == want:
            sizes.add(shape[0])
            return 0
        where = jax.tree_util.keystr(path)
        raise ProgramError(f"{name}{where} has shape {shape}: expected {want} (shared) or (B, *{want}) (one per instance)")

    return jax.tree_util.tree_map_with_path(one, tree, ref), sizes


def _key_axis(key: Any) -> tuple[Any, int | None, Any]:
    """(raw key data, batch size or None, key implementation or None for raw uint32 keys)."""
    if key is None:
        return None, None, None
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(key)
        data = jax.random.key_data(key)
        return data, (key.shape[0] if key.ndim == 1 else None), impl
    if key.ndim not in (1, 2):
        raise ProgramError(f"key has shape {key.shape}: expected one key or a (B,) batch of keys")
    return key, (key.shape[0] if key.ndim == 2 else None), None


def _resolve_devices(devices: int | Sequence[Any] | None) -> list[Any]:
    every = jax.devices()
    if devices is None:
        return every
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(every):
            raise ProgramError(f"devices={devices}: there are {len(every)} devices ({every[0].platform})")
        return every[: int(devices)]
    out = list(devices)
    if not out:
        raise ProgramError("devices is empty")
    return out


def _batched(machine: Machine, params, state, inputs, key, *, steps, names, remat, axes, impl):
    """`_vmapped` with hashable `axes`, jitted per machine (`Machine.jitted`), so compiled code dies with it."""
    return _vmapped(machine, params, state, inputs, key, steps=steps, names=names, remat=remat, axes=axes.tree, impl=impl)


_STATICS = ("steps", "names", "remat", "axes", "impl")


def _vmapped(machine: Machine, params, state, inputs, key, *, steps, names, remat, axes, impl):
    p_ax, s_ax, i_ax, k_ax = axes

    def one(p, s, x, k):
        if k is not None and impl is not None:
            k = jax.random.wrap_key_data(k, impl=impl)
        final, records, _ = machine.simulate(  # grouped by side and kind: named after the jit
            p, s, x, k, steps=steps, record=names, remat=remat, grouped=True
        )
        return final, records

    return jax.vmap(one, in_axes=(p_ax, s_ax, i_ax, k_ax))(params, state, inputs, key)


def _place(tree: Any, axes: Any, mesh: Mesh, pad: int) -> Any:
    """Pad batched leaves by `pad` copies of their last row and lay every leaf out on `mesh` (batched leaves split
    over the batch axis, shared leaves replicated). Works with several processes: each builds its own shards."""
    if tree is None:
        return None

    def one(leaf, ax):
        x = np.asarray(leaf)
        if ax is None:
            spec = PartitionSpec()
        else:
            if pad:
                x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
            spec = PartitionSpec(AXIS)
        sharding = NamedSharding(mesh, spec)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx, x=x: x[idx])

    return jax.tree_util.tree_map(one, tree, axes, is_leaf=lambda a: a is None)


def run_batch(
    machine: Machine,
    steps: int,
    *,
    params: Params | None = None,
    state: State | None = None,
    inputs: Mapping[str, Any] | None = None,
    key: jax.Array | None = None,
    record: str | Sequence[str] | None = None,
    remat: str | Remat = "auto",
    devices: int | Sequence[Any] | None = None,
) -> BatchTrace:
    """Run a batch of instances of `machine` for `steps` cycles in one call (one jitted `vmap` of `simulate`).

    **Arguments** (each array argument is shared when it has the machine's own shape, and per instance when it has
    an extra leading axis of size B; at least one must be per instance, and all batched ones must agree on B):

    - `machine`: the compiled program.
    - `steps`: number of cycles (a Python int).
    - `params`: parameters shaped like `machine.params` (leaf by leaf: W blocks, neuron parameters), or a batch of
      them (`stack_trees`); default `machine.params`, shared.
    - `state`: the state to start from (`State` leaves `outputs[kind]` (N_K, *shape) and `cycle` ()), shared or
      batched (e.g. `batch.state` of a previous batch run); default each instance's `init_state(params)`.
    - `inputs`: {output stream: array (steps, *kind.shape) shared, or (B, steps, *kind.shape)}, as in `Machine.run`.
    - `key`: one PRNG key (shared) or a batch of keys (shape (B,), or (B, 2) for raw uint32 keys); needed when the
      program has stochastic neurons.
    - `record`: streams to record, as in `Machine.run` (default every output port and the inputs of sinks).
    - `remat`: as in `Machine.run`.
    - `devices`: None (every device of `jax.devices()`), a number n (the first n), or a list of devices. With more
      than one, the batch axis is sharded across them with a `NamedSharding`.

    **Returns:** a `BatchTrace`: ``batch[stream]`` of shape (B, steps, *kind.shape), ``batch.instance(b)`` a `Trace`.
    The values equal B separate `Machine.run` calls, on one device or many.
    """
    steps = check_steps(steps)
    remat = machine.resolve_remat(remat)
    names = machine.record_names(record)
    params = machine.params if params is None else params
    inputs = {k: jnp.asarray(v, machine.dtype) for k, v in (inputs or {}).items()}
    machine.check_key(key)

    ref_params = jax.eval_shape(lambda: machine.params)
    p_ax, sizes = _axes("params", params, ref_params)
    s_ax = None
    if state is not None:
        ref_state = jax.eval_shape(machine.init_state, machine.params)
        s_ax, more = _axes("state", State(*state), ref_state)
        sizes |= more
    for s in inputs:
        side, k, _ = machine.layout.locate(s)
        if side != "out":
            raise ProgramError(f"input {s!r} is an input port; external inputs feed output ports (sources)")
    ref_inputs = {s: jax.ShapeDtypeStruct((steps, *machine.kind(s).shape), machine.dtype) for s in inputs}
    i_ax, more = _axes("inputs", inputs, ref_inputs)
    sizes |= more
    key_data, key_size, impl = _key_axis(key)
    if key_size is not None:
        sizes.add(key_size)
    if not sizes:
        raise ProgramError("nothing is batched: give params, state, inputs or key with a leading batch axis of size B")
    if len(sizes) > 1:
        raise ProgramError(f"batched arguments disagree on the batch size: {sorted(sizes)}")
    size = sizes.pop()
    if size < 1:
        raise ProgramError("the batch is empty")
    k_ax = None if key_size is None else 0
    axes = (p_ax, s_ax, i_ax, k_ax)
    statics = dict(steps=steps, names=names, remat=remat, axes=_Axes(axes), impl=impl)

    if not _concrete((params, state, inputs, key_data)):  # under jit/grad/vmap: the caller's transform places data
        final, records = _vmapped(machine, params, state, inputs, key_data, **{**statics, "axes": axes})
    else:
        devs = _resolve_devices(devices)
        if len(devs) == 1:
            with jax.default_device(devs[0]):
                final, records = machine.jitted(_batched, static_argnames=_STATICS)(params, state, inputs, key_data, **statics)
        else:
            mesh = Mesh(np.asarray(devs), (AXIS,))
            pad = -size % len(devs)
            args = [_place(t, a, mesh, pad) for t, a in zip((params, state, inputs, key_data), axes)]
            final, records = machine.jitted(_batched, static_argnames=_STATICS)(*args, **statics)
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils

                final, records = multihost_utils.process_allgather((final, records), tiled=True)
            if pad:
                final, records = jax.tree_util.tree_map(lambda a: a[:size], (final, records))
    first = final.cycle - steps
    if _concrete((records, final)):
        records = {sk: np.asarray(v) for sk, v in records.items()}
        first = np.asarray(first)
    records = machine.split_records(records, names, axis=2)
    return BatchTrace(records, {n: machine.kind(n) for n in names}, first, final)
