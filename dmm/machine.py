"""`Machine`: a compiled program as pure functions over pytrees.

*Parameters* are ``{"W": {kind: W_K}, "neurons": {group id: {param: (n, ...)}}}``: W_K is the dense M_K x N_K block
(rows = input ports, columns = output ports) or, for a sparse block, the values of its links in link order; neuron
parameters are stacked over the n neurons of each group. A group id depends only on its neuron type
(`dmm.layout.group_id`, e.g. ``"dense_1a2b3c4d"``); reach one neuron's parameter by name with `param`, `set_param`
and `param_path`, and select parameters and links by pattern with `mask`. *State* is `State(outputs, cycle)`: every output value
Y_c, ``outputs[kind]`` of shape ``(N_K, *kind.shape)``, and the number of cycles done. When the program has a Self
neuron, W lives in the state (Self's output) and ``params["W"]`` is only the initial matrix W_0.

One cycle c (`step`): the down movement X_c = W_{c-1}·Y_{c-1} per kind, then the up movement Y_c = F(X_c), one
vectorised call per neuron group, then the caller's inputs overwrite the output ports they feed. `run` scans the
cycle in one jitted `lax.scan` and records the selected streams.
"""

from __future__ import annotations

import fnmatch
import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .display import html_table
from .errors import DMMError, NonFiniteError, ProgramError
from .kinds import Kind
from .backends import Block
from .growth import transfer
from .layout import Layout
from .neuron import Context, Neuron
from .program import Program
from .remat import Auto, Nested, NoRemat, PerCycle, Remat, as_remat
from .trace import Trace


Params = dict[str, Any]


class State(NamedTuple):
    """Machine state: `outputs[kind]` of shape (N_K, *kind.shape), and `cycle` (int32 scalar), cycles done."""

    outputs: dict[str, jax.Array]
    cycle: jax.Array


def _is_concrete(tree: Any) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


class Machine:
    """A compiled program. Made by `dmm.compile`; see the module docstring for the pytrees it works on.

    **Attributes:** `program` (a snapshot of the source `Program`), `layout` (rows, columns, groups),
    `blocks` ({kind: `dmm.backends.Block`}: how each W_K is stored), `backend` ({kind: backend name}), `dtype`,
    `params` (the program's parameters as JAX arrays), `trainable` (a pytree of booleans shaped like `params`: the
    program's trainable links and neuron parameters).
    """

    def __init__(
        self,
        program: Program,
        layout: Layout,
        blocks: Mapping[str, Block],
        dtype: Any,
        precision: Any,
        params: Params,
        trainable: Params,
        y0: Mapping[str, np.ndarray],
    ) -> None:
        self.program = program
        self.layout = layout
        self.blocks = dict(blocks)
        self.backend = {k: b.backend.name for k, b in self.blocks.items()}
        self.dtype = jnp.dtype(dtype)
        self.precision = precision
        self.params = params
        self.trainable = trainable
        self._y0 = dict(y0)
        self._stochastic_groups = [g for g in layout.groups if g.type.stochastic]
        # Index tables are arguments of the jitted function, not constants baked into the compiled program.
        self._tables = {k: b.tables for k, b in self.blocks.items() if b.tables is not None}
        self._jitted: dict[Any, Callable] = {}

    def __repr__(self) -> str:
        return (f"Machine({len(self.program.neurons)} neurons in {len(self.layout.groups)} groups, "
                f"{len(self.program.links)} links, dtype {self.dtype.name}, backend {self.backend})")

    def _repr_html_(self) -> str:
        """For notebooks: one row per kind (its block of W: shape, backend, stored values, links)."""
        rows = [(k, self.layout.kinds[k].shape, f"{b.shape[0]} x {b.shape[1]}", b.backend.name,
                 int(np.size(self.params["W"][k])), len(b.links[0])) for k, b in self.blocks.items()]
        return html_table(repr(self), ("kind", "value shape", "block (inputs x outputs)", "backend", "stored", "links"), rows)

    @property
    def stochastic(self) -> bool:
        """Whether the program has stochastic neurons (runs then need a PRNG `key`)."""
        return bool(self._stochastic_groups)

    def jitted(self, fn: Callable, **jit_kwargs: Any) -> Callable:
        """``jax.jit(functools.partial(fn, self), **jit_kwargs)``, made once per machine and `fn` and kept with
        the machine (so compiled code lives exactly as long as the machine does)."""
        key = (fn, tuple(sorted((k, v if not isinstance(v, list) else tuple(v)) for k, v in jit_kwargs.items())))
        if key not in self._jitted:
            self._jitted[key] = jax.jit(functools.partial(fn, self), **jit_kwargs)
        return self._jitted[key]

    def resolve_remat(self, remat: str | Remat) -> Remat:
        """The `dmm.remat` strategy for `remat` (a strategy or its name); ``"auto"``: nested with a Self neuron,
        per-cycle checkpoints when a block's backend asks for them, else none."""
        remat = as_remat(remat)
        if not isinstance(remat, Auto):
            return remat
        if self.layout.self_stream is not None:
            return Nested()
        return PerCycle() if any(b.backend.checkpoint_cycles for b in self.blocks.values()) else NoRemat()

    # ------------------------------------------------------------------------------------------------ state
    @property
    def network(self):
        """The `NetworkLayout` (positions of W entries inside a NETWORK-kind value), or None."""
        return self.layout.network

    @property
    def streams(self) -> tuple[str, ...]:
        return self.layout.streams

    def kind(self, stream: str) -> Kind:
        """The (resolved) kind of a stream."""
        return self.layout.kind_of(stream)

    def init_state(self, params: Params | None = None) -> State:
        """The state before cycle 1: the program's initial outputs (zeros elsewhere); with Self, W_0 from params."""
        params = self.params if params is None else params
        ys = {k: jnp.asarray(v, self.dtype) for k, v in self._y0.items()}
        if self.layout.self_stream is not None:
            _, k, j = self.layout.locate(self.layout.self_stream)
            w0 = self.network.flatten({kk: jnp.asarray(w, self.dtype) for kk, w in params["W"].items()}, jnp)
            ys[k] = ys[k].at[j].set(w0)
        return State(ys, jnp.zeros((), jnp.int32))

    def read(self, state: State, stream: str) -> jax.Array:
        """The current value of an output stream."""
        side, k, i = self.layout.locate(stream)
        if side != "out":
            raise ProgramError(f"{stream!r} is an input port; the state holds outputs (inputs are W·Y)")
        return state.outputs[k][i]

    def write(self, state: State, stream: str, value: Any) -> State:
        """A copy of `state` with output `stream` set to `value`."""
        side, k, i = self.layout.locate(stream)
        if side != "out":
            raise ProgramError(f"{stream!r} is an input port; only outputs can be written")
        value = jnp.asarray(value, self.dtype)
        if value.shape != state.outputs[k].shape[1:]:
            raise ProgramError(f"value for {stream!r} has shape {value.shape}, expected {state.outputs[k].shape[1:]}")
        return state._replace(outputs={**state.outputs, k: state.outputs[k].at[i].set(value)})

    # --------------------------------------------------------------------------------------------- weights
    def entry(self, src: str, dst: str) -> tuple[str, Any]:
        """Where W[dst, src] is stored: ``(kind, position)`` with ``params["W"][kind][position]`` the weight (a
        dense block's position is (row, column); a sparse block stores only its links and its position is the
        link's index). An entry the block does not store, or a pair of ports that is not (output, input) of one
        kind, raises `ProgramError`."""
        s_side, k, j = self.layout.locate(src)
        d_side, k2, i = self.layout.locate(dst)
        if s_side != "out" or d_side != "in" or k != k2:
            raise ProgramError(f"no matrix entry {src!r} -> {dst!r}: needs an output and an input port of one kind")
        pos = self.blocks[k].position(i, j)
        if pos is None:
            raise ProgramError(f"{src!r} -> {dst!r} is not a link of the {self.backend[k]} {k!r} block")
        return k, pos

    def matrices(self, params: Params | None = None, state: State | None = None) -> dict[str, jax.Array]:
        """The dense blocks {kind: W_K} in force: from Self's output in `state` if the program has Self, else from
        params (sparse blocks are densified)."""
        params = self.params if params is None else params
        if self.layout.self_stream is not None and state is not None:
            value = self.read(state, self.layout.self_stream)
            return {k: self.network.block(value, k) for k in self.layout.kinds}
        return {k: self.blocks[k].backend.dense(jnp.asarray(w), self.blocks[k]) for k, w in params["W"].items()}

    def weight(self, src: str, dst: str, params: Params | None = None, state: State | None = None) -> float:
        """W[dst, src] as a float (from Self's output in `state` if given and the program has Self)."""
        k, pos = self.entry(src, dst)
        if self.layout.self_stream is not None and state is not None:
            return float(self.matrices(params, state)[k][pos])
        params = self.params if params is None else params
        return float(params["W"][k][pos])

    def weights(self, params: Params | None = None, state: State | None = None) -> dict[tuple[str, str], float]:
        """Every nonzero entry of W as {(src, dst): weight}."""
        out = {}
        for k, w in self.matrices(params, state).items():
            w = np.asarray(w)
            for i, j in zip(*np.nonzero(w)):
                out[(self.layout.cols[k][j], self.layout.rows[k][i])] = float(w[i, j])
        return out

    def set_weights(self, entries: Mapping[tuple[str, str], float], params: Params | None = None) -> Params:
        """A copy of `params` with W[dst, src] = w for every ``(src, dst): w`` (dense: any pair of one kind;
        sparse: existing links only)."""
        params = self.params if params is None else params
        where: dict[str, tuple[list[Any], list[float]]] = {}
        for (src, dst), w in _finite_entries(entries, "set_weights"):
            k, pos = self.entry(src, dst)
            where.setdefault(k, ([], []))
            where[k][0].append(pos)
            where[k][1].append(w)
        W = dict(params["W"])
        for k, (pos, ws) in where.items():  # one scatter per kind
            idx = np.asarray(pos)
            idx = tuple(idx.T) if idx.ndim == 2 else idx
            W[k] = jnp.asarray(W[k]).at[idx].set(jnp.asarray(ws, W[k].dtype))
        return {**params, "W": W}

    def edit(self, state: State, entries: Mapping[tuple[str, str], float]) -> State:
        """A copy of a Self machine's `state` with ``delta`` added to W[dst, src] for every ``(src, dst): delta``
        (a between-run edit of the running matrix)."""
        if self.layout.self_stream is None:
            raise ProgramError("edit() changes the matrix held by a Self neuron; this program has none (use set_weights)")
        value = self.read(state, self.layout.self_stream)
        delta = self.network.delta(dict(_finite_entries(entries, "edit")))
        return self.write(state, self.layout.self_stream, value + jnp.asarray(delta, self.dtype))

    def delta(self, entries: Mapping[tuple[str, str], float]) -> np.ndarray:
        """The NETWORK-kind value with ``delta`` at W[dst, src] for every ``(src, dst): delta`` (for edit channels
        and update neurons)."""
        if self.network is None:
            raise ProgramError("this program has no NETWORK-kind port, so no matrix-valued streams")
        return self.network.delta(entries).astype(self.dtype)

    def transfer(self, old: Machine, state: State, params: Params | None = None) -> tuple[Params, State]:
        """Carry a running machine over to this one (a grown version of its program); see `dmm.growth.transfer`.
        Returns this machine's ``(params, state)``."""
        return transfer(self, old, state, params)

    # ------------------------------------------------------------------------------------- neuron parameters
    @functools.cached_property
    def _neuron_place(self) -> dict[str, tuple[Any, int]]:
        """{neuron: (its group, its index in the group)}."""
        return {n: (g, i) for g in self.layout.groups for i, n in enumerate(g.members)}

    @functools.cached_property
    def _link_kinds(self) -> np.ndarray:
        """The kind name of every program link, in program order (object array)."""
        kind_of = {s: k for k, c in self.layout.cols.items() for s in c}
        return np.asarray([kind_of[s] for s, _ in self.program.link_columns()[0]], object)

    def param_path(self, neuron: str, name: str) -> tuple[str, str, str, int]:
        """Where parameter `name` of `neuron` is stored: ``("neurons", group id, name, index in the group)``, so that
        ``params["neurons"][gid][name][index]`` is its value. Group ids depend only on the neuron type
        (`dmm.layout.group_id`), so a path stays valid when neurons of other types are added. An unknown neuron or
        parameter raises `ProgramError` naming it (and listing the neuron's parameters)."""
        place = self._neuron_place.get(neuron) if isinstance(neuron, str) else None
        if place is None:
            raise ProgramError(f"unknown neuron {neuron!r}: this machine has no neuron of that name")
        g, i = place
        if not isinstance(name, str) or name not in g.type.defaults:
            raise ProgramError(
                f"neuron {neuron!r} ({g.type!r}) has no parameter {name!r}; its parameters: {list(g.type.defaults)}"
            )
        return ("neurons", g.id, name, i)

    def _param_leaf(self, path: tuple[str, str, str, int], params: Params, neuron: str) -> Any:
        try:
            return params["neurons"][path[1]][path[2]]
        except (KeyError, TypeError, IndexError):
            raise ProgramError(
                f"params have no value for {neuron}.{path[2]} (at ['neurons'][{path[1]!r}][{path[2]!r}]): "
                "they are not this machine's params"
            ) from None

    def param(self, neuron: str, name: str, params: Params | None = None) -> jax.Array:
        """The value of parameter `name` of `neuron` in `params` (default: `self.params`; any pytree shaped like it,
        such as `trainable` or a `mask`, works too): an array of the shape of the type's default value (the
        NETWORK-kind value's shape for a NETWORK-kind parameter), in the params' dtype."""
        path = self.param_path(neuron, name)
        leaf = self._param_leaf(path, self.params if params is None else params, neuron)
        return leaf[path[3]]

    def set_param(self, neuron: str, name: str, value: Any, params: Params | None = None) -> Params:
        """A copy of `params` (default: `self.params`) with parameter `name` of `neuron` set to `value`.

        **Arguments:** `value`: an array-like of the shape of the type's default value (cast to the parameter's
        dtype); for a NETWORK-kind parameter also matrix entries ``{(source port, target port): value}``. A wrong
        shape or a value that is not finite raises `ProgramError` naming the neuron and parameter. Pure: under
        `jax.jit` / `jax.grad` a traced `value` is taken as it is.
        """
        params = self.params if params is None else params
        path = self.param_path(neuron, name)
        _, gid, p, i = path
        leaf = jnp.asarray(self._param_leaf(path, params, neuron))
        where = f"set_param: neuron {neuron!r}, parameter {p!r}"
        if isinstance(self.program.neurons[neuron].type.defaults[p], Kind) and _looks_like_entries(value):
            try:
                value = self.network.delta(value)
            except ProgramError as e:
                raise ProgramError(f"{where}: {e}") from None
        if not isinstance(value, jax.core.Tracer):
            try:
                value = np.asarray(value)
            except (TypeError, ValueError):
                raise ProgramError(f"{where}: the value is not an array: {value!r}") from None
            if value.dtype.kind not in "biuf":
                raise ProgramError(f"{where}: the value is not numeric ({value.dtype})")
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise ProgramError(f"{where}: the value is not finite")
        if tuple(np.shape(value)) != tuple(leaf.shape[1:]):
            raise ProgramError(f"{where} has shape {tuple(leaf.shape[1:])}, not {tuple(np.shape(value))}")
        group = {**params["neurons"][gid], p: leaf.at[i].set(jnp.asarray(value).astype(leaf.dtype))}
        return {**params, "neurons": {**params["neurons"], gid: group}}

    def mask(
        self,
        params: str | Sequence[str] = (),
        links: str | Sequence[str] | Callable[[str, str], bool] = (),
        *,
        where: Callable[[str, str, Any], bool] | None = None,
    ) -> Params:
        """A pytree of booleans shaped like `self.params` (and `self.trainable`), True exactly at what it selects.

        **Arguments:**

        - `params`: glob patterns (`fnmatch`, case-sensitive) on ``"neuron.param"``, e.g. ``"attn*.w_q"`` or
          ``"*.bias"``; a neuron parameter matching any of them is selected (all its entries).
        - `links`: glob patterns on ``"src->dst"`` (no spaces), e.g. ``"*->head.in"``, or a predicate
          ``links(src, dst) -> bool``; a program link that matches is selected (its stored W entry; a sparse block
          has its own stored layout, see `entry`). Entries of a dense block that are not links are never selected.
        - `where`: a predicate ``where(neuron_name, param_name, neuron) -> bool`` (`neuron` the program's
          `dmm.Neuron`) selecting neuron parameters too.

        A pattern that matches nothing raises `ProgramError` naming it (a predicate may select nothing). Compose with
        the program's flags, e.g. ``jax.tree.map(operator.and_, machine.trainable, machine.mask("*.bias"))`` (train
        only the trainable biases), ``operator.or_`` for unions, ``jnp.logical_not`` for complements. Leaves are bool
        JAX arrays of the shapes of the matching `params` leaves.
        """
        candidates = [(n, p) for n, v in self.program.neurons.items() for p in v.type.defaults]
        hit = _select(self._patterns(params, "params"), [f"{n}.{p}" for n, p in candidates], "parameter", "'neuron.param'")
        chosen: set[tuple[str, str]] = {candidates[e] for e in np.flatnonzero(hit)}
        if where is not None:
            if not callable(where):
                raise ProgramError(f"mask: where must be a function (neuron, param, Neuron) -> bool, not {where!r}")
            neurons = self.program.neurons
            chosen.update((n, p) for n, p in candidates if where(n, p, neurons[n]))
        neuron_mask = {gid: {p: np.zeros(np.shape(v), bool) for p, v in d.items()} for gid, d in self.params["neurons"].items()}
        for n, p in chosen:
            _, gid, _, i = self.param_path(n, p)
            neuron_mask[gid][p][i] = True

        pairs = self.program.link_columns()[0]
        if callable(links):
            sel = np.fromiter((bool(links(s, d)) for s, d in pairs), bool, len(pairs))
        else:
            sel = _select(self._patterns(links, "links"), [f"{s}->{d}" for s, d in pairs], "link", "link 'src->dst'")
        kinds = self._link_kinds
        W = {k: jnp.asarray(b.backend.store(b, sel[kinds == k], False)) for k, b in self.blocks.items()}
        return {"W": W, "neurons": jax.tree_util.tree_map(jnp.asarray, neuron_mask)}

    @staticmethod
    def _patterns(spec: Any, what: str) -> list[str]:
        pats = [spec] if isinstance(spec, str) else list(spec)
        for pat in pats:
            if not isinstance(pat, str):
                raise ProgramError(f"mask: {what} patterns must be strings, not {pat!r}")
        return pats

    def to_program(self, params: Params | None = None, state: State | None = None) -> Program:
        """This machine written back as a `Program`: the same neurons (names, types, order), initial values, links
        (order and trainable flags) and `links_trainable`, with every link weight and neuron parameter taken from
        `params` (default: `self.params`). With a Self neuron and a `state`, the weights come from the matrix in force
        (Self's output in `state`, as in `matrices`), so the program starts where the run is.

        Rule for entries that are not links: a nonzero entry of a dense block (or of the running matrix) that is
        not a link of the program (set by `set_weights`, or written by Self) becomes a new link, *not trainable*
        (the machine never trained it: its `trainable` entry is False), after the program's links, kind by kind in
        row-major order (target, then source). A link whose weight is now zero stays a link. NETWORK-kind neuron
        parameters become matrix entries: the original entries first (with their new values), then the other
        nonzero entries. Compiling the result with this machine's backend and dtype gives these params again.
        """
        params = self.params if params is None else _conform("params", params, self.params)
        prog = self.program
        out = Program(prog.links_trainable)
        for n, neuron in prog.neurons.items():
            values = {}
            for p, d in neuron.type.defaults.items():
                v = np.asarray(self.param(n, p, params))
                values[p] = self._entries_of(v, neuron.params[p]) if isinstance(d, Kind) else v.astype(d.dtype)
            out.add(n, Neuron(neuron.type, values))
        for stream, v in prog.initial.items():
            out.set_initial(stream, v)

        pairs, _, trainable = prog.link_columns()
        weights = np.zeros(len(pairs))
        running = None
        if self.layout.self_stream is not None and state is not None:
            running = {k: np.asarray(w) for k, w in self.matrices(params, state).items()}
        extra: list[tuple[str, str, float]] = []
        kinds = self._link_kinds
        for k, b in self.blocks.items():
            sel = np.flatnonzero(kinds == k)
            if running is not None:
                values = running[k]
                rows, cols = np.indices(b.shape)
                index = np.full(b.shape, -1, np.int64)
                index[b.links] = np.arange(len(sel))
            else:
                values = np.asarray(params["W"][k])
                rows, cols = b.entries
                index = np.asarray(b.backend.store(b, np.arange(len(sel), dtype=np.int64), -1))
            values, index = values.reshape(-1).astype(np.float64), index.reshape(-1)
            rows, cols = np.asarray(rows).reshape(-1), np.asarray(cols).reshape(-1)
            is_link = index >= 0
            weights[sel[index[is_link]]] = values[is_link]
            r_names, c_names = self.layout.rows[k], self.layout.cols[k]
            for e in np.flatnonzero(~is_link & (values != 0)):
                extra.append((c_names[cols[e]], r_names[rows[e]], float(values[e])))
        out.link_many([s for s, _ in pairs], [d for _, d in pairs], weights, trainable=trainable)
        if extra:
            out.link_many([s for s, _, _ in extra], [d for _, d, _ in extra], [w for _, _, w in extra], trainable=False)
        return out

    def _entries_of(self, value: np.ndarray, original: Any) -> tuple[tuple[str, str, float], ...]:
        """Matrix entries of a NETWORK-kind value: those of `original` (in order, once each) with their values in
        `value`, then the other nonzero entries, kind by kind in row-major order."""
        net = self.network
        nonzero: dict[tuple[str, str], float] = {}
        for k, _, _, _ in net.blocks:
            blk = np.asarray(net.block(value, k), np.float64)
            for i, j in zip(*np.nonzero(blk)):
                nonzero[(net.cols[k][j], net.rows[k][i])] = float(blk[i, j])
        out, seen = [], set()
        for s, d, _ in original:
            if (s, d) not in seen:
                seen.add((s, d))
                out.append((s, d, nonzero.pop((s, d), 0.0)))
        out.extend((s, d, v) for (s, d), v in nonzero.items())
        return tuple(out)

    # --------------------------------------------------------------------------------------------- cycle
    def step(
        self, params: Params, state: State, inputs: Mapping[str, Any] | None = None, *, key: jax.Array | None = None
    ) -> tuple[State, dict[str, jax.Array]]:
        """One cycle (pure; wrap in `jax.jit` to call it in a loop).

        **Arguments:** `params`, `state` as above; `inputs`: {output stream: value of the stream's kind shape} to
        overwrite this cycle; `key`: PRNG key (needed when the program has stochastic neurons).

        **Returns:** `(new_state, X)` with `X[kind]` of shape (M_K, *kind.shape), this cycle's inputs.
        """
        params, state = self._prepare(params, state)
        inputs = {k: jnp.asarray(v, self.dtype) for k, v in (inputs or {}).items()}
        self.check_inputs(inputs, None)
        self.check_key(key)
        return self._cycle(self._tables, params, state, inputs, key)

    def _prepare(self, params: Params | None, state: State | None) -> tuple[Params, State]:
        """Check caller-given params and state against this machine (structure and shapes, with a `ProgramError`
        naming the first difference), cast them to its dtypes, and make the initial state when none is given."""
        params = self.params if params is None else _conform("params", params, self.params)
        if state is None:
            return params, self.init_state(params)
        like = jax.eval_shape(self.init_state, self.params)
        return params, State(*_conform("state", tuple(state), tuple(like)))

    @functools.cached_property
    def _input_pieces(self) -> dict[str, tuple[list[int], dict[int, int]]]:
        """{kind: (cuts, {start row: piece})}: where a cycle splits X_K (`jnp.split` at `cuts`) so that each group
        input port's rows ``start … start + n − 1`` are one piece. A cycle reads the ports' inputs as the pieces of
        one split rather than as separate slices: the values are the same, and the backward pass then assembles
        the cotangent of X_K with one concatenation instead of summing one zero-padded copy of X_K per port (a
        per-cycle fusion that took about half of a Transformer program's training step on CPU)."""
        lay = self.layout
        segments: dict[str, set[tuple[int, int]]] = {k: set() for k in lay.kinds}
        for g in lay.groups:
            for _, k, s in g.inputs:
                segments[k].add((s, s + g.size))
        out = {}
        for k, segs in segments.items():
            m = len(lay.rows[k])
            bounds = sorted({0, m, *(b for seg in segs for b in seg)})
            starts = bounds[:-1]
            # each port's rows must be exactly one piece (they are: the layout gives each port its own rows)
            if any(bounds[bounds.index(s) + 1] != e for s, e in segs):
                raise ProgramError(f"the input ports of kind {k!r} overlap in the layout")
            out[k] = (bounds[1:-1], {s: i for i, s in enumerate(starts)})
        return out

    def _cycle(self, tables, params: Params, state: State, inputs: Mapping[str, jax.Array], key: Any):
        lay = self.layout
        cycle = state.cycle + 1
        W = params["W"]
        if lay.self_stream is not None:
            value = self.read(state, lay.self_stream)
            W = {k: lay.network.block(value, k) for k in lay.kinds}
        X = {}
        for k, kind in lay.kinds.items():
            m, n = len(lay.rows[k]), len(lay.cols[k])
            if m == 0 or n == 0:
                X[k] = jnp.zeros((m, *kind.shape), self.dtype)
            else:
                y = state.outputs[k].reshape(n, -1)
                x = self.blocks[k].backend.product(W[k], tables.get(k), y, self.precision)
                X[k] = x.reshape(m, *kind.shape)
        ckey = None if key is None else jax.random.fold_in(key, cycle)
        parts: dict[str, list[jax.Array]] = {k: [] for k in lay.kinds}
        # the neurons' own matmuls (those that do not set a precision) follow the machine's precision
        with jax.default_matmul_precision(self.precision.name.lower()):
            pieces = {k: (jnp.split(X[k], cuts) if cuts else [X[k]]) for k, (cuts, _) in self._input_pieces.items()}
            for gi, g in enumerate(lay.groups):
                ins = {p: pieces[k][self._input_pieces[k][1][s]] for p, k, s in g.inputs}
                keys = jax.random.split(jax.random.fold_in(ckey, gi), g.size) if g.type.stochastic else None
                fn, net = g.type.fn, lay.network

                def one(p, x, kk, fn=fn, net=net):
                    return fn(p, x, Context(cycle, kk, net))

                try:
                    outs = jax.vmap(one, in_axes=(0, 0, 0 if keys is not None else None), axis_size=g.size)(params["neurons"][g.id], ins, keys)
                except DMMError as e:  # a mistake in the neuron's configuration, found when its function is traced
                    raise ProgramError(f"neuron type {g.type!r} (neurons {list(g.members[:3])}): {e}") from None
                except Exception as e:  # the type's function failed on correctly shaped inputs
                    raise ProgramError(
                        f"neuron type {g.type!r} (neurons {list(g.members[:3])}) failed on its inputs: {type(e).__name__}: {e}"
                    ) from e
                self._check_outputs(g, outs)
                for p, k, _ in g.outputs:
                    parts[k].append(outs[p].astype(self.dtype))
        Y = {}
        for k, kind in lay.kinds.items():
            Y[k] = jnp.concatenate(parts[k]) if parts[k] else jnp.zeros((0, *kind.shape), self.dtype)
        if inputs:
            fed: dict[str, tuple[list[int], list[jax.Array]]] = {}
            for s, v in inputs.items():
                _, k, j = lay.locate(s)
                fed.setdefault(k, ([], []))
                fed[k][0].append(j)
                fed[k][1].append(v)
            for k, (idx, vals) in fed.items():
                Y[k] = Y[k].at[np.asarray(idx)].set(jnp.stack(vals))
        return State(Y, cycle), X

    def _check_outputs(self, g, outs: Any) -> None:
        names = [p.name for p in g.type.outputs]
        if not isinstance(outs, Mapping) or sorted(outs) != sorted(names):
            got = sorted(outs) if isinstance(outs, Mapping) else type(outs).__name__
            raise ProgramError(f"neuron type {g.type!r} (neurons {list(g.members[:3])}...) returned {got}, expected {names}")
        for p, k, _ in g.outputs:
            want = (g.size, *self.layout.kinds[k].shape)
            if outs[p].shape != want:
                raise ProgramError(
                    f"neuron type {g.type!r}, output {p!r}: one neuron returned shape {outs[p].shape[1:]}, "
                    f"kind {k!r} needs {want[1:]}"
                )

    def check_cycle(self) -> None:
        """Trace one cycle abstractly (`jax.eval_shape`), so that a neuron type's mistakes surface with its name
        (`dmm.compile` calls it)."""
        key = jax.random.key(0) if self.stochastic else None
        state = State(*jax.eval_shape(self.init_state, self.params))
        jax.eval_shape(lambda t, p, s: self._cycle(t, p, s, {}, key), self._tables, self.params, state)

    def check_key(self, key: Any) -> None:
        """Raise `ProgramError` when the program has stochastic neurons and `key` is None."""
        if key is None and self._stochastic_groups:
            names = [m for g in self._stochastic_groups for m in g.members][:3]
            raise ProgramError(f"neurons {names} are stochastic: pass key=jax.random.key(...)")

    def check_inputs(self, inputs: Mapping[str, jax.Array], steps: int | None) -> None:
        """Check external inputs {output stream: array (steps, *kind.shape)} (or (*kind.shape) for one cycle, when
        `steps` is None); a wrong stream or shape raises `ProgramError` naming it. Only outputs of *sources*
        (neurons without input ports, such as `neurons.external`) can be fed: feeding the output of a neuron that
        computes it from its inputs would silently discard what it computes."""
        for s, v in inputs.items():
            side, k, _ = self.layout.locate(s)
            if side != "out":
                raise ProgramError(f"input {s!r} is an input port; external inputs feed output ports (sources)")
            neuron = self.program.neuron(s.split(".")[0])
            if neuron.type.inputs:
                raise ProgramError(
                    f"external input {s!r}: neuron {s.split('.')[0]!r} ({neuron.type.name}) computes that output from its "
                    "inputs, and a fed value would replace it silently; feed a source (neurons.external()) linked to it"
                )
            shape = self.layout.kinds[k].shape
            want = shape if steps is None else (steps, *shape)
            if tuple(v.shape) != want:
                raise ProgramError(f"external input {s!r} has shape {tuple(v.shape)}, expected {want}")

    # ------------------------------------------------------------------------------------------------ runs
    def record_names(self, record: str | Sequence[str] | None) -> tuple[str, ...]:
        """The stream names a ``record=`` argument selects (see `run`), in order, each once."""
        lay = self.layout
        if record is None:
            sinks = [f"{n}.{p.name}" for g in lay.groups if not g.type.outputs for n in g.members for p in g.type.inputs]
            return tuple(s for k in lay.kinds for s in lay.cols[k]) + tuple(sinks)
        if isinstance(record, str):
            record = lay.streams if record == "all" else [record]
        names: list[str] = []
        for r in record:
            if isinstance(r, str) and "." not in r:  # a neuron: all its ports
                neuron = self.program.neuron(r)
                names.extend(f"{r}.{p.name}" for p in neuron.type.ports)
            else:
                lay.locate(r)
                names.append(r)
        return tuple(dict.fromkeys(names))

    def simulate(
        self,
        params: Params,
        state: State | None,
        inputs: Mapping[str, jax.Array],
        key: jax.Array | None,
        *,
        steps: int,
        record: tuple[str, ...],
        remat: str | Remat = "auto",
        check_finite: bool = False,
        grouped: bool = False,
    ) -> tuple[State, dict[str, jax.Array], Any]:
        """The pure function behind `run`: `steps` cycles in one `lax.scan` (jit it, or call it under a transform).

        **Returns:** `(final_state, records, finite)`: records maps each name of `record` to an array
        (steps, *kind.shape); `finite` is None, or (with `check_finite`) a dict {"in:K"/"out:K": bool array
        (steps, ports)} telling which streams were finite at each cycle. With ``grouped=True`` the records are
        grouped by side and kind instead, {"in:K"/"out:K": (steps, ports, *shape)} with the ports in the order of
        `record` (one output array per group, so that a jitted caller recording many streams does not compile one
        output per stream: 12 s for 257 streams on CPU); `split_records` names them.
        """
        params, state = self._prepare(params, state)
        return self._simulate(
            self._tables, params, state, inputs, key, steps=steps, record=record, remat=self.resolve_remat(remat),
            check_finite=check_finite, grouped=grouped,
        )

    def split_records(self, recs: Mapping[str, Any], record: Sequence[str], axis: int = 1) -> dict[str, Any]:
        """{stream: array} from grouped records {"in:K"/"out:K": (..., steps, ports, *shape)} (`simulate` with
        ``grouped=True``), in the order of `record`; `axis` is the ports axis (2 with a leading batch axis)."""
        cols: dict[str, int] = {}
        out = {}
        for n in record:
            side, k, _ = self.layout.locate(n)
            sk = f"{side}:{k}"
            cols[sk] = cols.get(sk, -1) + 1
            out[n] = recs[sk][(slice(None),) * axis + (cols[sk],)]
        return out

    def _simulate(self, tables, params, state, inputs, key, *, steps, record, remat, check_finite, grouped):
        state = self.init_state(params) if state is None else state
        lay = self.layout
        sel: dict[str, list[int]] = {}
        for n in record:
            side, k, i = lay.locate(n)
            sel.setdefault(f"{side}:{k}", []).append(i)

        def body(st, xs):
            new, X = self._cycle(tables, params, st, xs, key)
            out = {}
            for sk, idx in sel.items():
                side, k = sk.split(":", 1)
                out[sk] = (X[k] if side == "in" else new.outputs[k])[np.asarray(idx)]
            flags = None
            if check_finite:
                flags = {}
                for k, kind in lay.kinds.items():
                    ax = tuple(range(1, 1 + len(kind.shape)))
                    flags[f"in:{k}"] = jnp.all(jnp.isfinite(X[k]), axis=ax)
                    flags[f"out:{k}"] = jnp.all(jnp.isfinite(new.outputs[k]), axis=ax)
            return new, (out, flags)

        final, (recs, flags) = remat.scan(body, state, dict(inputs), steps)
        return final, (recs if grouped else self.split_records(recs, record)), flags

    def run(
        self,
        steps: int,
        *,
        params: Params | None = None,
        state: State | None = None,
        inputs: Mapping[str, Any] | None = None,
        record: str | Sequence[str] | None = None,
        key: jax.Array | None = None,
        remat: str | Remat = "auto",
        check_finite: bool = False,
    ) -> Trace:
        """Run `steps` cycles as one jitted `lax.scan` and return a `Trace`.

        **Arguments:**

        - `steps`: number of cycles (a Python int).
        - `params`: parameters (default: the program's, `self.params`).
        - `state`: the state to continue from (default: `init_state(params)`); cycle numbers continue from it.
        - `inputs`: {output stream: array (steps, *kind.shape)}: per-cycle values that overwrite those outputs.
        - `record`: stream names or neuron names (all their ports) to record; `"all"` for every stream; default:
          every output port plus the input ports of neurons without outputs (sinks).
        - `key`: PRNG key for stochastic neurons (same key, same trace).
        - `remat`: a `dmm.remat` strategy or its name: "none", "step" (checkpoint each cycle), "nested" (two-level
          sqrt(steps) checkpointing, for self-modifying runs) or "auto" (`resolve_remat`). It changes memory and
          speed of `jax.grad`, never the values.
        - `check_finite`: raise `NonFiniteError` naming the first cycle and stream that is NaN or Inf (not under
          `jax.jit`/`jax.grad`).

        Composes with `jax.grad`, `jax.vmap` and `jax.jit`: under them the trace holds traced arrays; otherwise
        NumPy arrays.
        """
        steps = check_steps(steps)
        remat = self.resolve_remat(remat)
        names = self.record_names(record)
        params, state = self._prepare(params, state)
        inputs = {k: jnp.asarray(v, self.dtype) for k, v in (inputs or {}).items()}
        self.check_inputs(inputs, steps)
        self.check_key(key)
        run = self.jitted(Machine._simulate, static_argnames=("steps", "record", "remat", "check_finite", "grouped"))
        final, recs, flags = run(
            self._tables, params, state, inputs, key, steps=steps, record=names, remat=remat, check_finite=check_finite,
            grouped=True,
        )
        first = final.cycle - steps
        concrete = _is_concrete((recs, final))
        if concrete:
            recs = {sk: np.asarray(v) for sk, v in recs.items()}
        records = self.split_records(recs, names)
        if concrete:
            first = int(first)
            error = self.nonfinite_error(flags, first) if check_finite else None
            if error is not None:
                raise error
        return Trace(records, {n: self.layout.kind_of(n) for n in names}, first, final)

    def nonfinite_error(self, flags: Mapping[str, Any], first: int) -> NonFiniteError | None:
        """The `NonFiniteError` naming the first cycle and stream that the finiteness `flags` of `simulate` (with
        ``check_finite=True``) mark as NaN/Inf, for a run whose cycles start after `first`; None if all are finite."""
        bad = None
        for sk, f in flags.items():
            f = np.asarray(f)
            rows = np.flatnonzero(~f.all(axis=1))
            if len(rows):
                c = int(rows[0])
                rank = (c, 0 if sk.startswith("in:") else 1)
                if bad is None or rank < bad[0]:
                    side, k = sk.split(":", 1)
                    names = self.layout.rows[k] if side == "in" else self.layout.cols[k]
                    bad = (rank, names[int(np.flatnonzero(~f[c])[0])])
        if bad is None:
            return None
        return NonFiniteError(f"stream {bad[1]!r} became non-finite at cycle {first + bad[0][0] + 1}")


def _finite_entries(entries: Mapping[tuple[str, str], Any], what: str) -> list[tuple[tuple[str, str], float]]:
    """The ``((src, dst), value)`` items of `entries` with float values; a value that is not a finite number raises
    `ProgramError` naming the entry (a NaN weight would silently turn every later stream into NaN)."""
    out = []
    for (src, dst), w in entries.items():
        if isinstance(w, jax.core.Tracer):  # under a transformation: the caller's traced value, unchecked
            out.append(((src, dst), w))
            continue
        try:
            v = float(w)
        except (TypeError, ValueError):
            raise ProgramError(f"{what}: the value for {src!r} -> {dst!r} is not a number: {w!r}") from None
        if not math.isfinite(v):
            raise ProgramError(f"{what}: the value for {src!r} -> {dst!r} is {v}, not a finite number")
        out.append(((src, dst), v))
    return out


def _glob(pattern: str, names: Sequence[str]) -> np.ndarray:
    """Bool array: which of `names` the glob `pattern` matches (`fnmatch.fnmatchcase` rules)."""
    match = re.compile(fnmatch.translate(pattern)).match
    return np.fromiter((match(n) is not None for n in names), bool, len(names))


def _select(patterns: Sequence[str], labels: Sequence[str], what: str, names: str) -> np.ndarray:
    """Bool array over `labels`: matched by any of the glob `patterns`; a pattern that matches nothing raises
    `ProgramError` ("the {what} pattern ... matches no {names} of this machine")."""
    sel = np.zeros(len(labels), bool)
    for pat in patterns:
        hit = _glob(pat, labels)
        if not hit.any():
            raise ProgramError(
                f"mask: the {what} pattern {pat!r} matches no {names} of this machine "
                f"(there are {len(labels)}, e.g. {list(labels[:3])})"
            )
        sel |= hit
    return sel


def _looks_like_entries(value: Any) -> bool:
    """Whether `value` is given as matrix entries (a mapping, or a sequence of ``(src, dst, v)`` /
    ``((src, dst), v)`` items) rather than as an array."""
    if isinstance(value, Mapping):
        return True
    return (isinstance(value, (tuple, list)) and len(value) > 0
            and all(isinstance(e, (tuple, list)) and len(e) in (2, 3) and isinstance(e[0], (str, tuple)) for e in value))


def check_steps(steps: Any) -> int:
    """`steps` as a Python int, or `ProgramError` when it is not a non-negative integer."""
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 0:
        raise ProgramError(f"steps must be a non-negative int, not {steps!r}")
    return int(steps)


def _conform(what: str, tree: Any, like: Any) -> Any:
    """`tree` with the structure and leaf shapes of `like` (else a `ProgramError` naming the first difference),
    its leaves cast to the dtypes of `like`."""
    got = dict(jax.tree_util.tree_flatten_with_path(tree)[0])
    want = dict(jax.tree_util.tree_flatten_with_path(like)[0])
    if got.keys() != want.keys():
        missing = [jax.tree_util.keystr(k) for k in want if k not in got]
        extra = [jax.tree_util.keystr(k) for k in got if k not in want]
        raise ProgramError(
            f"{what} do not match this machine: missing {missing[:3]}, unexpected {extra[:3]}"
            if what == "params" else f"{what} does not match this machine: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    out = []
    for k, ref in want.items():
        x = got[k]
        if np.shape(x) != tuple(ref.shape):
            raise ProgramError(
                f"{what}{jax.tree_util.keystr(k)} has shape {np.shape(x)}; this machine needs {tuple(ref.shape)}"
            )
        out.append(jnp.asarray(x, ref.dtype))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), out)
