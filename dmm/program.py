"""`Program`: what a user writes. Neurons, weighted links and initial output values; pure data.

Streams are named ``"neuron.port"``. A link joins an *output* port (a column of the network matrix W) to an
*input* port (a row of W) of the same kind. Every check that can be made while a program is written is made then,
and fails with a `ProgramError` naming the neuron, port, kind or link at fault.

Example:

    p = dmm.Program()
    p.add("one", neurons.const(1.0))
    p.add("cnt", neurons.accumulator())
    p.link("cnt.out", "cnt.accum", 1.0)
    p.link("one.out", "cnt.delta", 1.0)
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .display import html_table
from .errors import ProgramError, UnknownStreamError
from .kinds import NETWORK, Kind
from .neuron import Neuron, NeuronType, Port, matrix_entries


@dataclasses.dataclass(frozen=True)
class Link:
    """A weighted link from output port `src` to input port `dst`. `trainable=False` marks a hard link."""

    src: str
    dst: str
    weight: float
    trainable: bool = True


def split_stream(name: str) -> tuple[str, str]:
    """Split ``"neuron.port"`` into its two names."""
    if not isinstance(name, str):
        raise ProgramError(f"a stream name must be a string 'neuron.port', not {name!r}")
    parts = name.split(".")
    if len(parts) != 2 or not all(parts):
        raise ProgramError(f"{name!r} is not a stream name of the form 'neuron.port'")
    return parts[0], parts[1]


def _same(a: Any, b: Any) -> bool:
    """Equality of two parameter or initial values (arrays, or tuples of matrix entries)."""
    return a == b if isinstance(a, tuple) or isinstance(b, tuple) else np.array_equal(a, b)


class Program:
    """A DMM program under construction (see the module docstring).

    A program is a mutable builder; `dmm.compile` takes a snapshot, so changing a program after compiling it does
    not change the machine. `copy()` gives an independent program (for growing a running machine, see
    `Machine.transfer`).

    **Arguments:** `links_trainable`: the trainable flag of links made by `link` and `link_many` without a
    `trainable` argument (default True; a program whose wiring is fixed, such as a Transformer's, uses False so
    that only its neurons' parameters train).
    """

    def __init__(self, links_trainable: bool = True) -> None:
        if not isinstance(links_trainable, (bool, np.bool_)):
            raise ProgramError(f"links_trainable must be a bool, not {links_trainable!r}")
        self._links_trainable = bool(links_trainable)
        self._neurons: dict[str, Neuron] = {}
        # links in columns: (src, dst) -> row of the weight and trainable columns, in the order they were made
        self._links: dict[tuple[str, str], int] = {}
        self._weights: list[float] = []
        self._trainable: list[bool] = []
        self._initial: dict[str, Any] = {}
        self._kinds: dict[str, Kind] = {}

    # ----------------------------------------------------------------------------------------------- building
    def add(self, name: str, neuron: Neuron | NeuronType, *, initial: Mapping[str, Any] | None = None) -> None:
        """Add a neuron named `name` (no '.') made by a neuron factory such as `neurons.accumulator()`.

        `initial` optionally maps output port names to initial output values Y_0 (default zeros).
        """
        if isinstance(neuron, NeuronType):
            neuron = Neuron(neuron)
        if not isinstance(neuron, Neuron):
            raise ProgramError(f"neuron {name!r}: expected a Neuron or NeuronType, got {type(neuron).__name__}")
        if not isinstance(name, str) or not name or "." in name or name.strip() != name:
            raise ProgramError(f"bad neuron name {name!r}: use a non-empty name without '.' or outer spaces")
        if name in self._neurons:
            raise ProgramError(f"duplicate neuron name {name!r}")
        kinds = dict(self._kinds)
        for port in neuron.type.ports:
            k = port.kind
            if k.name in kinds and kinds[k.name] != k:
                raise ProgramError(
                    f"neuron {name!r}, port {port.name!r}: kind {k!r} has the name of another kind in this program "
                    f"({kinds[k.name]!r})"
                )
            kinds[k.name] = k
        selfs = [n for n, v in self._neurons.items() if v.type.role == "self"] if neuron.type.role == "self" else []
        if selfs:
            raise ProgramError(f"neuron {name!r}: a program has at most one Self neuron ({selfs[0]!r} is one)")
        self._neurons[name] = neuron
        self._kinds = kinds
        try:
            for port, value in (initial or {}).items():
                self.set_initial(f"{name}.{port}", value)
        except ProgramError:
            del self._neurons[name]
            raise

    def link(self, src: str, dst: str, weight: float = 1.0, *, trainable: bool | None = None) -> None:
        """Link output port `src` to input port `dst` with `weight` (W[dst, src] = weight).

        `trainable=False` marks a hard link, kept fixed in training; None (default) takes the program's
        `links_trainable`. Linking the same pair twice is an error (use `set_weight` to change a weight).
        """
        s_port, s_input = self._lookup(src)
        d_port, d_input = self._lookup(dst)
        if s_input:
            raise ProgramError(f"link {src!r} -> {dst!r}: the source {src!r} is an input port; links start at outputs")
        if not d_input:
            raise ProgramError(f"link {src!r} -> {dst!r}: the target {dst!r} is an output port; links end at inputs")
        if s_port.kind != d_port.kind:
            raise ProgramError(
                f"link {src!r} -> {dst!r} joins kind {s_port.kind.name!r} to kind {d_port.kind.name!r}; "
                "links join ports of one kind (convert inside a neuron)"
            )
        w = self._check_weight(src, dst, weight)
        if (src, dst) in self._links:
            raise ProgramError(f"duplicate link {src!r} -> {dst!r} (use set_weight to change it)")
        self._links[(src, dst)] = len(self._weights)
        self._weights.append(w)
        self._trainable.append(self._links_trainable if trainable is None else bool(trainable))

    def link_many(self, src: Sequence[str], dst: Sequence[str], weight: Any = 1.0, *, trainable: Any = None) -> None:
        """Make many links at once: ``link(src[e], dst[e], weight[e], trainable=trainable[e])`` for every e, checked
        together (each distinct port once), so that a million links take a fraction of a second.

        **Arguments:** `src`, `dst`: sequences of n stream names (output ports, input ports); `weight`: a number or
        an array-like (n,) of finite numbers; `trainable`: a bool or an array-like (n,) of bools, or None (default)
        for the program's `links_trainable`. Nothing is added when any link is refused (the `ProgramError` names
        the first bad link).
        """
        src, dst = list(src), list(dst)
        n = len(src)
        if len(dst) != n:
            raise ProgramError(f"link_many: {n} sources but {len(dst)} targets")
        try:
            w = np.broadcast_to(np.asarray(weight, np.float64), (n,))
        except (TypeError, ValueError):
            raise ProgramError(f"link_many: weights must be numbers broadcastable to ({n},), not {weight!r}") from None
        if trainable is None:
            trainable = self._links_trainable
        try:
            train = np.broadcast_to(np.asarray(trainable), (n,))
        except ValueError:
            raise ProgramError(f"link_many: trainable must be a bool or {n} bools, not {trainable!r}") from None
        if train.dtype != bool:
            raise ProgramError(f"link_many: trainable must be bools, not {train.dtype}")
        bad = np.flatnonzero(~np.isfinite(w))
        if len(bad):
            e = int(bad[0])
            raise ProgramError(f"link {src[e]!r} -> {dst[e]!r}: weight {w[e]} is not finite")
        kinds = {}
        for names, want_input, role in ((src, False, "source"), (dst, True, "target")):
            for s in dict.fromkeys(names):
                if not isinstance(s, str):
                    raise ProgramError(f"link_many: the {role} {s!r} is not a stream name")
                port, is_input = self._lookup(s)
                if is_input != want_input:
                    side = "an input port; links start at outputs" if want_input is False else "an output port; links end at inputs"
                    raise ProgramError(f"link_many: the {role} {s!r} is {side}")
                kinds[s] = port.kind
        for s, d in zip(src, dst):
            if kinds[s] is not kinds[d] and kinds[s] != kinds[d]:
                raise ProgramError(
                    f"link {s!r} -> {d!r} joins kind {kinds[s].name!r} to kind {kinds[d].name!r}; links join ports of one kind"
                )
        start = len(self._weights)
        new = dict(zip(zip(src, dst), range(start, start + n)))
        if len(new) < n or not self._links.keys().isdisjoint(new):
            seen = set(self._links)
            for pair in zip(src, dst):
                if pair in seen:
                    raise ProgramError(f"duplicate link {pair[0]!r} -> {pair[1]!r} (use set_weight to change it)")
                seen.add(pair)
        if self._links:
            self._links.update(new)
        else:
            self._links = new
        self._weights.extend(w.tolist())
        self._trainable.extend(train.tolist())

    def set_weight(self, src: str, dst: str, weight: float) -> None:
        """Change the weight of an existing link."""
        if (src, dst) not in self._links:
            raise ProgramError(f"there is no link {src!r} -> {dst!r}")
        self._weights[self._links[(src, dst)]] = self._check_weight(src, dst, weight)

    def set_initial(self, stream: str, value: Any) -> None:
        """Set the initial output Y_0 of output port `stream` (an array of the port's kind shape)."""
        port = self.port(stream)
        if self.is_input(stream):
            raise ProgramError(f"{stream!r} is an input port; initial values belong to output ports")
        if port.kind == NETWORK:
            if self.neuron(split_stream(stream)[0]).type.role == "self":
                raise ProgramError(f"{stream!r} is the Self neuron's output: its initial value W_0 is the program's links")
            self._initial[stream] = matrix_entries(value, f"initial value of {stream!r}")
            return
        try:
            v = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ProgramError(f"initial value of {stream!r} is not numeric: {value!r}") from None
        if v.shape != port.kind.shape:
            raise ProgramError(
                f"initial value of {stream!r} has shape {v.shape}; kind {port.kind.name!r} needs {port.kind.shape}"
            )
        if not np.all(np.isfinite(v)):
            raise ProgramError(f"initial value of {stream!r} is not finite")
        v.setflags(write=False)
        self._initial[stream] = v

    @staticmethod
    def _check_weight(src: str, dst: str, weight: Any) -> float:
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise ProgramError(f"link {src!r} -> {dst!r}: weight {weight!r} is not a number") from None
        if not math.isfinite(w):
            raise ProgramError(f"link {src!r} -> {dst!r}: weight {w} is not finite")
        return w

    # ---------------------------------------------------------------------------------------------- reading
    @property
    def links_trainable(self) -> bool:
        """The trainable flag of links made without a `trainable` argument (a building default: it is not part of
        the program's content, so it does not enter `==`)."""
        return self._links_trainable

    @property
    def neurons(self) -> Mapping[str, Neuron]:
        """Neuron name -> `Neuron`, in the order they were added (a read-only view)."""
        return types.MappingProxyType(self._neurons)

    @property
    def links(self) -> tuple[Link, ...]:
        """The links, in the order they were made."""
        w, t = self._weights, self._trainable
        return tuple(Link(s, d, w[i], t[i]) for (s, d), i in self._links.items())

    def link_columns(self) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
        """The links as columns, in the order they were made: ``(pairs, weights, trainable)`` with `pairs` a list
        of ``(src, dst)``, `weights` float64 (n,) and `trainable` bool (n,) (cheaper than `links` for large programs)."""
        return list(self._links), np.asarray(self._weights, np.float64), np.asarray(self._trainable, bool)

    @property
    def initial(self) -> Mapping[str, Any]:
        """Output stream -> initial value, for the streams that do not start at zero: a float64 NumPy array, or for a
        NETWORK-kind stream a tuple of matrix entries ``(src, dst, value)``."""
        return types.MappingProxyType(self._initial)

    @property
    def kinds(self) -> Mapping[str, Kind]:
        """Kind name -> Kind, for every kind a port of this program has."""
        return types.MappingProxyType(self._kinds)

    def neuron(self, name: str) -> Neuron:
        try:
            return self._neurons[name]
        except KeyError:
            raise UnknownStreamError(f"unknown neuron {name!r}") from None

    def _lookup(self, stream: str) -> tuple[Port, bool]:
        n, p = split_stream(stream)
        neuron = self._neurons.get(n)
        if neuron is None:
            raise UnknownStreamError(f"unknown neuron {n!r} (in {stream!r})")
        port = neuron.type.port(p)
        if port is None:
            names = [q.name for q in neuron.type.ports]
            raise UnknownStreamError(f"neuron {n!r} ({neuron.type!r}) has no port {p!r}; its ports: {names}")
        return port, neuron.type.is_input(p)

    def port(self, stream: str) -> Port:
        """The `Port` behind ``"neuron.port"``."""
        return self._lookup(stream)[0]

    def is_input(self, stream: str) -> bool:
        """Whether ``"neuron.port"`` is an input port (a row of W)."""
        return self._lookup(stream)[1]

    def streams(self) -> Iterator[str]:
        """Every stream name, neuron by neuron, inputs before outputs."""
        for n, neuron in self._neurons.items():
            for port in neuron.type.ports:
                yield f"{n}.{port.name}"

    def copy(self) -> Program:
        """An independent copy (neurons, links and initial values are immutable and shared)."""
        out = Program(self._links_trainable)
        out._neurons, out._links = dict(self._neurons), dict(self._links)
        out._weights, out._trainable = list(self._weights), list(self._trainable)
        out._initial, out._kinds = dict(self._initial), dict(self._kinds)
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Program):
            return NotImplemented
        if list(self._neurons) != list(other._neurons) or self.links != other.links:
            return False
        for n, a in self._neurons.items():
            b = other._neurons[n]
            if a.type != b.type or a.params.keys() != b.params.keys():
                return False
            if not all(_same(a.params[k], b.params[k]) for k in a.params):
                return False
        if self._initial.keys() != other._initial.keys():
            return False
        return all(_same(v, other._initial[k]) for k, v in self._initial.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Program({len(self._neurons)} neurons, {len(self._links)} links, kinds {sorted(self._kinds)})"

    def _repr_html_(self) -> str:
        """For notebooks: one row per neuron (type, inputs, outputs, number of incoming links)."""
        fan_in: dict[str, int] = {}
        for src, dst in self._links:
            fan_in[dst.split(".")[0]] = fan_in.get(dst.split(".")[0], 0) + 1
        rows = [(n, repr(v.type), ", ".join(f"{p.name}: {p.kind.name}" for p in v.type.inputs),
                 ", ".join(f"{p.name}: {p.kind.name}" for p in v.type.outputs), fan_in.get(n, 0))
                for n, v in self._neurons.items()]
        return html_table(repr(self), ("neuron", "type", "inputs", "outputs", "links in"), rows)
