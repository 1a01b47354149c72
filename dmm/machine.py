"""`Machine`: a compiled program as pure functions over pytrees.

*Parameters* are ``{"W": {kind: W_K}, "neurons": {group id: {param: (n, ...)}}}``: W_K is the dense M_K x N_K block
(rows = input ports, columns = output ports) or, for a sparse block, the values of its links in link order; neuron
parameters are stacked over the n neurons of each group. *State* is `State(outputs, cycle)`: every output value
Y_c, ``outputs[kind]`` of shape ``(N_K, *kind.shape)``, and the number of cycles done. When the program has a Self
neuron, W lives in the state (Self's output) and ``params["W"]`` is only the initial matrix W_0.

One cycle c (`step`): the down movement X_c = W_{c-1}·Y_{c-1} per kind, then the up movement Y_c = F(X_c), one
vectorised call per neuron group, then the caller's inputs overwrite the output ports they feed. `run` scans the
cycle in one jitted `lax.scan` and records the selected streams.
"""

from __future__ import annotations

import functools
import math
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
from .neuron import Context
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
            for gi, g in enumerate(lay.groups):
                ins = {p: X[k][s : s + g.size] for p, k, s in g.inputs}
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
