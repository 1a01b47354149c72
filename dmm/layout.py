"""Static layout of a compiled program: port numbering, neuron groups and the network-matrix layout.

For every kind K the input ports are the rows of W_K and the output ports its columns, ordered
group by group, then port by port within the group's type, then neuron by neuron. Each group's ports therefore
occupy contiguous slices of X_K and Y_K, so a cycle reads a group's inputs with static slices and writes its
outputs by concatenation; nothing in the compiled cycle grows with the number of neurons of a type.

A group's id (its key in ``params["neurons"]``) is a function of its neuron type alone (`group_id`), so adding,
removing or reordering neurons of other types never renames a group.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping

import numpy as np

from .errors import ProgramError, UnknownStreamError
from .kinds import NETWORK, Kind
from .neuron import Entries, NeuronType, matrix_entries
from .program import Program, split_stream


@dataclasses.dataclass(frozen=True)
class Group:
    """Neurons of one type, run by one vectorised call.

    `inputs` and `outputs` give, per port of the type, `(port, kind name, start)`: the group's n values of that
    port are rows `start : start + n` of X (or Y) of that kind. `id` is the group's key in ``params["neurons"]``, a
    function of `type` alone (`group_id`).
    """

    id: str
    type: NeuronType
    members: tuple[str, ...]
    inputs: tuple[tuple[str, str, int], ...]
    outputs: tuple[tuple[str, str, int], ...]

    @property
    def size(self) -> int:
        return len(self.members)


@dataclasses.dataclass(frozen=True)
class NetworkLayout:
    """Where each kind's block W_K sits inside a NETWORK-kind value.

    If NETWORK is the program's only kind the value is W itself, shape (M, N). Otherwise the value is the flat
    concatenation of every block W_K (row-major), in the order of `blocks` = ((kind name, M_K, N_K, offset), ...).
    """

    blocks: tuple[tuple[str, int, int, int], ...]
    kind: Kind
    rows: Mapping[str, tuple[str, ...]]
    cols: Mapping[str, tuple[str, ...]]

    def block(self, value, kind_name: str):
        """W_K from a network value (a NumPy or JAX array of `kind.shape`)."""
        for name, m, n, off in self.blocks:
            if name == kind_name:
                if len(self.kind.shape) == 2:
                    return value
                return value[off : off + m * n].reshape(m, n)
        raise ProgramError(f"the network has no block of kind {kind_name!r}")

    def flatten(self, blocks: Mapping[str, object], xp=np):
        """A network value from the blocks {kind name: W_K}."""
        if len(self.kind.shape) == 2:
            return blocks[self.blocks[0][0]]
        parts = [xp.reshape(blocks[name], (-1,)) for name, m, n, _ in self.blocks if m * n]
        return xp.concatenate(parts)

    def __post_init__(self) -> None:
        rows = {s: (name, i) for name, _, _, _ in self.blocks for i, s in enumerate(self.rows[name])}
        cols = {s: (name, j) for name, _, _, _ in self.blocks for j, s in enumerate(self.cols[name])}
        object.__setattr__(self, "_row", rows)
        object.__setattr__(self, "_col", cols)
        object.__setattr__(self, "_offsets", {name: (n, off) for name, _, n, off in self.blocks})

    def index(self, src: str, dst: str) -> int | tuple[int, int]:
        """The position of entry W[dst, src] inside a network value."""
        (ks, j), (kd, i) = self._col.get(src, ("", -1)), self._row.get(dst, (None, -1))
        if ks != kd:
            raise ProgramError(f"no network entry {src!r} -> {dst!r}: not an output and input port of one kind")
        n, off = self._offsets[ks]
        return (i, j) if len(self.kind.shape) == 2 else off + i * n + j

    def delta(self, entries: Mapping[tuple[str, str], float] | Entries) -> np.ndarray:
        """The network value (float64 NumPy) with `delta` added at W[dst, src] for every ``{(src, dst): delta}`` (or
        ``(src, dst, delta)`` triple)."""
        out = np.zeros(self.kind.shape)
        for src, dst, d in matrix_entries(entries, "matrix entries"):
            out[self.index(src, dst)] += d
        return out


@dataclasses.dataclass(frozen=True)
class Layout:
    """Rows, columns and groups of a program (see the module docstring)."""

    kinds: Mapping[str, Kind]  # resolved kinds (NETWORK has its concrete shape), in order
    rows: Mapping[str, tuple[str, ...]]  # kind name -> input streams (rows of W_K)
    cols: Mapping[str, tuple[str, ...]]  # kind name -> output streams (columns of W_K)
    groups: tuple[Group, ...]
    network: NetworkLayout | None
    self_stream: str | None  # the Self neuron's output, if the program has one

    def locate(self, stream: str) -> tuple[str, str, int]:
        """``(side, kind name, index)`` of a stream; side is "in" (a row of W) or "out" (a column)."""
        split_stream(stream)
        for k in self.kinds:
            if stream in self._row_index[k]:
                return "in", k, self._row_index[k][stream]
            if stream in self._col_index[k]:
                return "out", k, self._col_index[k][stream]
        raise UnknownStreamError(f"unknown stream {stream!r}")

    def kind_of(self, stream: str) -> Kind:
        return self.kinds[self.locate(stream)[1]]

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(s for k in self.kinds for s in self.rows[k] + self.cols[k])

    def __post_init__(self) -> None:
        object.__setattr__(self, "_row_index", {k: {s: i for i, s in enumerate(v)} for k, v in self.rows.items()})
        object.__setattr__(self, "_col_index", {k: {s: i for i, s in enumerate(v)} for k, v in self.cols.items()})


DIGEST_CHARS = 8
"""Hex digits of the configuration digest in a group id (see `group_id`)."""


def group_id(t: NeuronType, chars: int = DIGEST_CHARS) -> str:
    """The id of the group of neuron type `t`: its name when it has no configuration, else
    ``f"{name}_{digest}"`` with `digest` the first `chars` hex digits of the SHA-256 of ``repr(t.config)`` (the
    same in every process and on every machine, unlike Python's `hash`). E.g. ``"linear_1a2b3c4d"``.

    `build_layout` uses ``chars=64`` (the whole digest) for types of one program whose short ids would collide (a
    chance of about 2^-32 per pair of types: only then does an id depend on the program's other types)."""
    if not t.config:
        return t.name
    return f"{t.name}_{hashlib.sha256(repr(t.config).encode()).hexdigest()[:chars]}"


def _group_ids(types: list[NeuronType]) -> dict[NeuronType, str]:
    """Distinct ids for distinct types: `group_id`, with the whole digest for the (astronomically rare) types whose
    short ids collide, and a `ProgramError` if even those collide."""
    ids = {t: group_id(t) for t in types}
    count: dict[str, int] = {}
    for gid in ids.values():
        count[gid] = count.get(gid, 0) + 1
    for t, gid in ids.items():
        if count[gid] > 1:
            ids[t] = group_id(t, 64)
    if len(set(ids.values())) < len(ids):
        by_id: dict[str, list[NeuronType]] = {}
        for t, gid in ids.items():
            by_id.setdefault(gid, []).append(t)
        clash = next(v for v in by_id.values() if len(v) > 1)
        raise ProgramError(f"neuron types {clash[0]!r} and {clash[1]!r} have the same group id {ids[clash[0]]!r}")
    return ids


def build_layout(program: Program) -> Layout:
    """Number the ports of `program` and group its neurons by type."""
    members: dict[NeuronType, list[str]] = {}
    for name, neuron in program.neurons.items():
        members.setdefault(neuron.type, []).append(name)
    if not members:
        raise ProgramError("the program has no neurons")

    kind_order: list[str] = []
    kinds: dict[str, Kind] = {}
    for t in members:
        for port in t.ports:
            if port.kind.name not in kinds:
                kinds[port.kind.name] = port.kind
                kind_order.append(port.kind.name)

    rows: dict[str, list[str]] = {k: [] for k in kind_order}
    cols: dict[str, list[str]] = {k: [] for k in kind_order}
    groups = []
    ids = _group_ids(list(members))
    for t, names in members.items():
        gid = ids[t]
        ins, outs = [], []
        for port in t.inputs:
            ins.append((port.name, port.kind.name, len(rows[port.kind.name])))
            rows[port.kind.name].extend(f"{n}.{port.name}" for n in names)
        for port in t.outputs:
            outs.append((port.name, port.kind.name, len(cols[port.kind.name])))
            cols[port.kind.name].extend(f"{n}.{port.name}" for n in names)
        groups.append(Group(gid, t, tuple(names), tuple(ins), tuple(outs)))

    rows_t = {k: tuple(v) for k, v in rows.items()}
    cols_t = {k: tuple(v) for k, v in cols.items()}
    network = None
    if "network" in kinds:
        if kind_order == ["network"]:
            shape: tuple[int, ...] = (len(rows_t["network"]), len(cols_t["network"]))
            blocks = (("network", shape[0], shape[1], 0),)
        else:
            blocks, off = [], 0
            for k in kind_order:
                m, n = len(rows_t[k]), len(cols_t[k])
                blocks.append((k, m, n, off))
                off += m * n
            blocks = tuple(blocks)
            shape = (off,)
        if 0 in shape:
            raise ProgramError(
                "the network matrix has no entries: a NETWORK-kind port needs input and output ports to address"
            )
        kinds["network"] = Kind("network", shape)
        network = NetworkLayout(blocks, kinds["network"], rows_t, cols_t)

    selfs = [n for n, v in program.neurons.items() if v.type.role == "self"]
    self_stream = None
    if selfs:
        t = program.neurons[selfs[0]].type
        if len(t.outputs) != 1 or t.outputs[0].kind != NETWORK:
            raise ProgramError(f"Self neuron {selfs[0]!r} must have exactly one output, of the NETWORK kind")
        self_stream = f"{selfs[0]}.{t.outputs[0].name}"
    return Layout({k: kinds[k] for k in kind_order}, rows_t, cols_t, tuple(groups), network, self_stream)
