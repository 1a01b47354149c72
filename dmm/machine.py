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

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .errors import DMMError, NonFiniteError, ProgramError, UnknownStreamError
from .kinds import Kind
from .layout import Layout
from .neuron import Context
from .program import Program
from .sparse import EllTables, ell_matmul
from .trace import Trace


Params = dict[str, Any]


class State(NamedTuple):
    """Machine state: `outputs[kind]` of shape (N_K, *kind.shape), and `cycle` (int32 scalar), cycles done."""

    outputs: dict[str, jax.Array]
    cycle: jax.Array


REMAT = ("auto", "none", "step", "nested")


def _is_concrete(tree: Any) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


class Machine:
    """A compiled program. Made by `dmm.compile`; see the module docstring for the pytrees it works on.

    **Attributes:** `program` (a snapshot of the source `Program`), `layout` (rows, columns, groups),
    `backend` ({kind: "dense" | "sparse"}), `dtype`, `params` (the program's parameters as JAX arrays),
    `trainable` (a pytree of booleans shaped like `params`: the program's trainable links and neuron parameters).
    """

    def __init__(
        self,
        program: Program,
        layout: Layout,
        backend: Mapping[str, str],
        dtype: Any,
        precision: Any,
        params: Params,
        trainable: Params,
        tables: Mapping[str, EllTables],
        edges: Mapping[str, tuple[np.ndarray, np.ndarray]],
        y0: Mapping[str, np.ndarray],
    ) -> None:
        self.program = program
        self.layout = layout
        self.backend = dict(backend)
        self.dtype = jnp.dtype(dtype)
        self.precision = precision
        self.params = params
        self.trainable = trainable
        self._tables = {k: EllTables(*map(jnp.asarray, t)) for k, t in tables.items()}
        self._edges = dict(edges)
        self._edge_index: dict[str, dict[tuple[int, int], int]] = {}  # sparse blocks: (row, col) -> edge, on demand
        self._y0 = dict(y0)
        self._stochastic = [g for g in layout.groups if g.type.stochastic]
        # Index tables are arguments of the jitted function, not constants baked into the compiled program.
        self._simulate_jit = jax.jit(self._simulate_grouped, static_argnames=("steps", "record", "remat", "check_finite"))

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
    def _entry(self, src: str, dst: str) -> tuple[str, Any]:
        s_side, k, j = self.layout.locate(src)
        d_side, k2, i = self.layout.locate(dst)
        if s_side != "out" or d_side != "in" or k != k2:
            raise ProgramError(f"no matrix entry {src!r} -> {dst!r}: needs an output and an input port of one kind")
        if self.backend[k] == "sparse":
            if k not in self._edge_index:
                rows, cols = self._edges[k]
                self._edge_index[k] = {(int(r), int(c)): e for e, (r, c) in enumerate(zip(rows, cols))}
            e = self._edge_index[k].get((i, j))
            if e is None:
                raise ProgramError(f"{src!r} -> {dst!r} is not a link of the sparse {k!r} block")
            return k, e
        return k, (i, j)

    def matrices(self, params: Params | None = None, state: State | None = None) -> dict[str, jax.Array]:
        """The dense blocks {kind: W_K} in force: from Self's output in `state` if the program has Self, else from
        params (sparse blocks are densified)."""
        params = self.params if params is None else params
        if self.layout.self_stream is not None and state is not None:
            value = self.read(state, self.layout.self_stream)
            return {k: self.network.block(value, k) for k in self.layout.kinds}
        out = {}
        for k, w in params["W"].items():
            if self.backend[k] == "sparse":
                rows, cols = self._edges[k]
                w = jnp.zeros((len(self.layout.rows[k]), len(self.layout.cols[k])), w.dtype).at[rows, cols].set(w)
            out[k] = w
        return out

    def weight(self, src: str, dst: str, params: Params | None = None, state: State | None = None) -> float:
        """W[dst, src] as a float (from Self's output in `state` if given and the program has Self)."""
        k, pos = self._entry(src, dst)
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
        for (src, dst), w in entries.items():
            k, pos = self._entry(src, dst)
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
        return self.write(state, self.layout.self_stream, value + jnp.asarray(self.network.delta(entries), self.dtype))

    def delta(self, entries: Mapping[tuple[str, str], float]) -> np.ndarray:
        """The NETWORK-kind value with ``delta`` at W[dst, src] for every ``(src, dst): delta`` (for edit channels
        and update neurons)."""
        if self.network is None:
            raise ProgramError("this program has no NETWORK-kind port, so no matrix-valued streams")
        return self.network.delta(entries).astype(self.dtype)

    def transfer(self, old: Machine, state: State, params: Params | None = None) -> tuple[Params, State]:
        """Carry a running machine over to this one (a grown version of its program).

        Streams and weights are matched by name: every output stream of `old` that this machine has keeps its value
        in `state`, every W entry between ports both machines have keeps its value in `params` (and, with Self, in the
        running matrix; an old link whose weight became zero stays zero); new streams start at their initial values,
        new entries at this program's link weights. NETWORK-kind streams are re-laid out entry by entry.
        Returns this machine's ``(params, state)``.
        """
        params = old.params if params is None else params
        entries = old.weights(params)
        # a link trained or edited to exactly zero keeps its zero (it is not a missing entry)
        entries.update({(l.src, l.dst): 0.0 for l in old.program.links if (l.src, l.dst) not in entries})
        new_params = self.params
        keep = {e: w for e, w in entries.items() if self._has_entry(*e)}
        new_params = self.set_weights(keep, new_params) if keep else new_params
        new_params = {**new_params, "neurons": self._transfer_neuron_params(old, params["neurons"], new_params["neurons"])}
        new_state = self.init_state(new_params)
        outs = {k: np.array(v) for k, v in new_state.outputs.items()}
        for k, cols in old.layout.cols.items():
            old_y = np.asarray(state.outputs[k])
            for j, s in enumerate(cols):
                if s == old.layout.self_stream:
                    continue
                try:
                    side, k2, i = self.layout.locate(s)
                except UnknownStreamError:
                    continue
                if k == "network":  # matrix-valued streams: entries move with their ports
                    outs[k2][i] = self._carry_network(old, old_y[j], outs[k2][i])
                    continue
                if old_y[j].shape != outs[k2][i].shape:
                    raise ProgramError(f"stream {s!r} changed shape from {old_y[j].shape} to {outs[k2][i].shape}")
                outs[k2][i] = old_y[j]
        if self.layout.self_stream is not None:
            _, k, j = self.layout.locate(self.layout.self_stream)
            base = self.network.flatten({kk: np.asarray(w) for kk, w in self.matrices(new_params).items()})
            if old.layout.self_stream is not None:
                # the running matrix: entries that are nonzero or links of the old program keep their running value
                # (a link a live edit set to zero stays zero); the other entries take this program's weights
                running = np.asarray(old.read(state, old.layout.self_stream))
                keep = running != 0
                for link in old.program.links:
                    keep[old.network.index(link.src, link.dst)] = True
                base = self._carry_network(old, running, base, keep)
            outs[k][j] = base
        return new_params, State({k: jnp.asarray(v, self.dtype) for k, v in outs.items()}, jnp.asarray(state.cycle))

    def _carry_network(self, old: Machine, value: Any, base: Any, keep: Any = None) -> np.ndarray:
        """A NETWORK-kind value of `old` mapped onto this machine's network layout by port names: every entry
        between ports both machines have takes `value`'s entry (where the boolean value `keep` is true, if given),
        the others keep `base`'s."""
        out = np.array(base, dtype=np.float64)
        value = np.asarray(value)
        for name, _, n_old, off_old in old.network.blocks:
            if name not in self.network.rows:
                continue
            pairs = []
            for side in ("rows", "cols"):
                new_index = {s: i for i, s in enumerate(getattr(self.network, side)[name])}
                hits = [(i, new_index[s]) for i, s in enumerate(getattr(old.network, side)[name]) if s in new_index]
                pairs.append(np.asarray(hits, np.int64).reshape(-1, 2))
            (ro, rn), (co, cn) = pairs[0].T, pairs[1].T
            n_new, off_new = next((b[2], b[3]) for b in self.network.blocks if b[0] == name)
            src = (ro[:, None], co[None, :]) if value.ndim == 2 else (off_old + ro[:, None] * n_old + co[None, :],)
            dst = (rn[:, None], cn[None, :]) if out.ndim == 2 else (off_new + rn[:, None] * n_new + cn[None, :],)
            out[dst] = value[src] if keep is None else np.where(np.asarray(keep)[src], value[src], out[dst])
        return out

    def _has_entry(self, src: str, dst: str) -> bool:
        try:
            self._entry(src, dst)
            return True
        except (ProgramError, UnknownStreamError):
            return False

    def _transfer_neuron_params(self, old: Machine, old_np: Params, new_np: Params) -> Params:
        out = {g.id: {p: np.array(v) for p, v in new_np[g.id].items()} for g in self.layout.groups}
        where_old = {n: (g, i) for g in old.layout.groups for i, n in enumerate(g.members)}
        for g in self.layout.groups:
            for i, n in enumerate(g.members):
                if n in where_old and where_old[n][0].type == g.type:
                    og, oi = where_old[n]
                    for p in out[g.id]:
                        out[g.id][p][i] = np.asarray(old_np[og.id][p])[oi]
        return {gid: {p: jnp.asarray(v) for p, v in d.items()} for gid, d in out.items()}

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
        self._check_inputs(inputs, None)
        self._check_key(key)
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
            y = state.outputs[k]
            if m == 0 or n == 0:
                X[k] = jnp.zeros((m, *kind.shape), self.dtype)
            elif self.backend[k] == "sparse":
                X[k] = ell_matmul(W[k], tables[k], y.reshape(n, -1)).reshape(m, *kind.shape)
            else:
                X[k] = jnp.matmul(W[k], y.reshape(n, -1), precision=self.precision).reshape(m, *kind.shape)
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

    def _check_key(self, key: Any) -> None:
        if key is None and self._stochastic:
            names = [m for g in self._stochastic for m in g.members][:3]
            raise ProgramError(f"neurons {names} are stochastic: pass key=jax.random.key(...)")

    def _check_inputs(self, inputs: Mapping[str, jax.Array], steps: int | None) -> None:
        for s, v in inputs.items():
            side, k, _ = self.layout.locate(s)
            if side != "out":
                raise ProgramError(f"input {s!r} is an input port; external inputs feed output ports (sources)")
            shape = self.layout.kinds[k].shape
            want = shape if steps is None else (steps, *shape)
            if tuple(v.shape) != want:
                raise ProgramError(f"external input {s!r} has shape {tuple(v.shape)}, expected {want}")

    # ------------------------------------------------------------------------------------------------ runs
    def _record_names(self, record: str | Sequence[str] | None) -> tuple[str, ...]:
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
        remat: str = "auto",
        check_finite: bool = False,
    ) -> tuple[State, dict[str, jax.Array], Any]:
        """The pure function behind `run`: `steps` cycles in one `lax.scan`.

        **Returns:** `(final_state, records, finite)`: records maps each name of `record` to an array
        (steps, *kind.shape); `finite` is None, or (with `check_finite`) a dict {"in:K"/"out:K": bool array
        (steps, ports)} telling which streams were finite at each cycle.
        """
        params, state = self._prepare(params, state)
        return self._simulate(
            self._tables, params, state, inputs, key, steps=steps, record=record, remat=remat, check_finite=check_finite
        )

    def _simulate(self, tables, params, state, inputs, key, *, steps, record, remat, check_finite):
        final, recs, flags = self._simulate_grouped(
            tables, params, state, inputs, key, steps=steps, record=record, remat=remat, check_finite=check_finite
        )
        return final, self._split_records(recs, record), flags

    def _split_records(self, recs: Mapping[str, Any], record: Sequence[str], axis: int = 1) -> dict[str, Any]:
        """{stream: array} from the grouped records {"in:K"/"out:K": (..., steps, ports, *shape)} of
        `_simulate_grouped`, in the order of `record`; `axis` is the ports axis (2 with a leading batch axis)."""
        cols: dict[str, int] = {}
        out = {}
        for n in record:
            side, k, _ = self.layout.locate(n)
            sk = f"{side}:{k}"
            cols[sk] = cols.get(sk, -1) + 1
            out[n] = recs[sk][(slice(None),) * axis + (cols[sk],)]
        return out

    def _simulate_grouped(self, tables, params, state, inputs, key, *, steps, record, remat, check_finite):
        """`_simulate` with the records grouped by side and kind, {"in:K"/"out:K": (steps, ports, *shape)} (ports in
        the order of `record`): one output array per group, so that recording many streams does not make XLA compile
        one output per stream (slow: 12 s for 257 streams on CPU); `_split_records` names them."""
        state = self.init_state(params) if state is None else state
        lay = self.layout
        sel: dict[str, list[tuple[str, int]]] = {}
        for n in record:
            side, k, i = lay.locate(n)
            sel.setdefault(f"{side}:{k}", []).append((n, i))

        def body(st, xs):
            new, X = self._cycle(tables, params, st, xs, key)
            out = {}
            for sk, items in sel.items():
                side, k = sk.split(":", 1)
                src = X[k] if side == "in" else new.outputs[k]
                out[sk] = src[np.asarray([i for _, i in items])]
            flags = None
            if check_finite:
                flags = {}
                for k, kind in lay.kinds.items():
                    ax = tuple(range(1, 1 + len(kind.shape)))
                    flags[f"in:{k}"] = jnp.all(jnp.isfinite(X[k]), axis=ax)
                    flags[f"out:{k}"] = jnp.all(jnp.isfinite(new.outputs[k]), axis=ax)
            return new, (out, flags)

        if remat == "auto":
            remat = "nested" if lay.self_stream else ("step" if "sparse" in self.backend.values() else "none")
        final, (recs, flags) = _scan(body, state, dict(inputs), steps, remat)
        return final, recs, flags

    def run(
        self,
        steps: int,
        *,
        params: Params | None = None,
        state: State | None = None,
        inputs: Mapping[str, Any] | None = None,
        record: str | Sequence[str] | None = None,
        key: jax.Array | None = None,
        remat: str = "auto",
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
        - `remat`: rematerialisation for gradients: "none", "step" (checkpoint each cycle), "nested" (two-level
          sqrt(steps) checkpointing, for self-modifying runs) or "auto" (nested with Self, step with sparse blocks,
          else none). It changes memory and speed of `jax.grad`, never the values.
        - `check_finite`: raise `NonFiniteError` naming the first cycle and stream that is NaN or Inf (not under
          `jax.jit`/`jax.grad`).

        Composes with `jax.grad`, `jax.vmap` and `jax.jit`: under them the trace holds traced arrays; otherwise
        NumPy arrays.
        """
        if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 0:
            raise ProgramError(f"steps must be a non-negative int, not {steps!r}")
        if remat not in REMAT:
            raise ProgramError(f"remat must be one of {REMAT}, not {remat!r}")
        names = self._record_names(record)
        params, state = self._prepare(params, state)
        inputs = {k: jnp.asarray(v, self.dtype) for k, v in (inputs or {}).items()}
        self._check_inputs(inputs, int(steps))
        self._check_key(key)
        final, recs, flags = self._simulate_jit(
            self._tables, params, state, inputs, key, steps=int(steps), record=names, remat=remat, check_finite=check_finite
        )
        first = final.cycle - steps
        concrete = _is_concrete((recs, final))
        if concrete:
            recs = {sk: np.asarray(v) for sk, v in recs.items()}
        records = self._split_records(recs, names)
        if concrete:
            first = int(first)
            if check_finite:
                self._raise_nonfinite(flags, first)
        return Trace(records, {n: self.layout.kind_of(n) for n in names}, first, final)

    def _raise_nonfinite(self, flags: Mapping[str, jax.Array], first: int) -> None:
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
        if bad is not None:
            raise NonFiniteError(f"stream {bad[1]!r} became non-finite at cycle {first + bad[0][0] + 1}")


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


def _scan(body, state, xs, steps: int, remat: str):
    """lax.scan with the chosen rematerialisation (see `Machine.run`)."""
    if remat == "step":
        body = jax.checkpoint(body)
    if remat != "nested" or steps < 4:
        return jax.lax.scan(body, state, xs, length=steps)
    k = math.isqrt(steps - 1) + 1
    q, r = divmod(steps, k)
    head = jax.tree_util.tree_map(lambda a: a[: q * k].reshape(q, k, *a.shape[1:]), xs)
    tail = jax.tree_util.tree_map(lambda a: a[q * k :], xs)
    chunk = jax.checkpoint(lambda s, x: jax.lax.scan(body, s, x, length=k))
    state, out = jax.lax.scan(chunk, state, head, length=q)
    out = jax.tree_util.tree_map(lambda a: a.reshape(q * k, *a.shape[2:]), out)
    if r:
        state, out_tail = jax.lax.scan(body, state, tail, length=r)
        out = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), out, out_tail)
    return state, out
