"""`Block`: a sub-program with named ports, included into other programs under a name prefix.

A block is a `Program` plus a table of *ports*: a block input names one or more input streams inside (all of one
kind; whatever is linked to the block input is linked to each of them), a block output names one output stream.
`Block.include` copies the block into a target program, its neurons renamed ``f"{prefix}/{name}"`` (the separator
is `SEPARATOR`, ``"/"``, since neuron names cannot hold '.'), links the given sources to the block's inputs and
returns a `Ports`: the block's output ports mapped to the new stream names, to wire the next block without
f-strings:

    layer = dmm.Block(layer_program, inputs={"x": ("ln.in", "res.a")}, outputs={"y": "res.out"})
    h = embed.include(p, "embed", connect={"tokens": "tokens.out"})
    for i in range(3):
        h = layer.include(p, f"l{i}", connect={"x": h["y"]})
    p.link(h["y"], "readout.in")

Blocks nest: a block whose program was built with `include` holds names such as ``"l0/ln"``, which include again as
``"enc/l0/ln"``. Every neuron adds a cycle, so branches of different lengths between blocks may need `dmm.align`.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import ProgramError, UnknownStreamError
from .kinds import Kind
from .neuron import Neuron
from .program import Program, split_stream

SEPARATOR = "/"
"""Between a prefix and a block's neuron name: ``f"{prefix}{SEPARATOR}{name}"``."""


def _port_name(name: Any, side: str) -> str:
    if not isinstance(name, str) or not name or name.strip() != name:
        raise ProgramError(f"Block: bad {side} port name {name!r}: use a non-empty string without outer spaces")
    return name


def _streams(value: Any, port: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence) or not value or not all(isinstance(s, str) for s in value):
        raise ProgramError(
            f"Block: input port {port!r} must map to an input stream 'neuron.port' or a non-empty sequence of them, "
            f"not {value!r}"
        )
    if len(set(value)) != len(value):
        raise ProgramError(f"Block: input port {port!r} names a stream twice: {list(value)}")
    return tuple(value)


@dataclasses.dataclass(frozen=True, eq=False)
class Ports(Mapping):
    """What `Block.include` returns: the included block's ports by name, as stream names of the target program.

    **Attributes:** `prefix` (the include's prefix), `outputs` ({block output port: output stream}), `inputs`
    ({block input port: tuple of input streams}). As a mapping it is `outputs`: ``ports["y"]`` is the stream to
    link from (an unknown name raises `UnknownStreamError` listing the block's outputs).
    """

    prefix: str
    outputs: Mapping[str, str]
    inputs: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs", types.MappingProxyType(dict(self.outputs)))
        object.__setattr__(self, "inputs", types.MappingProxyType({k: tuple(v) for k, v in self.inputs.items()}))

    def __getitem__(self, name: str) -> str:
        try:
            return self.outputs[name]
        except (KeyError, TypeError):
            raise UnknownStreamError(
                f"block {self.prefix!r} has no output port {name!r}; its outputs: {list(self.outputs)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def __repr__(self) -> str:
        return f"Ports({self.prefix!r}, outputs={dict(self.outputs)}, inputs={dict(self.inputs)})"


@dataclasses.dataclass(frozen=True, eq=False)
class Block:
    """A sub-program with named ports (see the module docstring).

    **Arguments:**

    - `program`: the block's `Program` (a snapshot is kept: changing it afterwards does not change the block).
    - `inputs`: {block input port: an input stream ``"neuron.port"`` of `program`, or a sequence of them, all of
      one kind}.
    - `outputs`: {block output port: an output stream of `program`}.

    Port names are non-empty strings; inputs and outputs are separate name spaces. A bad name, a stream of the wrong
    side (an output where an input belongs, or the reverse) or input streams of different kinds raise
    `ProgramError` naming the port and streams; an unknown stream raises `UnknownStreamError`.
    """

    program: Program
    inputs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    outputs: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.program, Program):
            raise ProgramError(f"Block: program must be a dmm.Program, not {type(self.program).__name__}")
        if not isinstance(self.inputs, Mapping) or not isinstance(self.outputs, Mapping):
            raise ProgramError("Block: inputs and outputs must be mappings {port name: stream(s)}")
        program = self.program.copy()
        inputs: dict[str, tuple[str, ...]] = {}
        for port, value in self.inputs.items():
            streams = _streams(value, _port_name(port, "input"))
            kinds = []
            for s in streams:
                if not program.is_input(s):
                    raise ProgramError(
                        f"Block: input port {port!r} maps to {s!r}, an output port; block inputs map to input ports"
                    )
                kinds.append(program.port(s).kind)
            if any(k != kinds[0] for k in kinds):
                detail = ", ".join(f"{s} ({k.name!r})" for s, k in zip(streams, kinds))
                raise ProgramError(f"Block: input port {port!r} maps to streams of different kinds: {detail}")
            inputs[port] = streams
        outputs: dict[str, str] = {}
        for port, s in self.outputs.items():
            _port_name(port, "output")
            if not isinstance(s, str):
                raise ProgramError(f"Block: output port {port!r} must map to one output stream, not {s!r}")
            if program.is_input(s):
                raise ProgramError(
                    f"Block: output port {port!r} maps to {s!r}, an input port; block outputs map to output ports"
                )
            outputs[port] = s
        object.__setattr__(self, "program", program)
        object.__setattr__(self, "inputs", types.MappingProxyType(inputs))
        object.__setattr__(self, "outputs", types.MappingProxyType(outputs))

    def kind(self, port: str) -> Kind:
        """The kind of block port `port` (an input port's name first, then an output port's)."""
        if port in self.inputs:
            return self.program.port(self.inputs[port][0]).kind
        if port in self.outputs:
            return self.program.port(self.outputs[port]).kind
        raise UnknownStreamError(
            f"the block has no port {port!r}; its inputs: {list(self.inputs)}, its outputs: {list(self.outputs)}"
        )

    def include(
        self,
        target: Program,
        prefix: str,
        connect: Mapping[str, str | Sequence[str]] | None = None,
        *,
        weight: float = 1.0,
        trainable: bool | None = None,
    ) -> Ports:
        """Copy the block into `target` under `prefix` and wire its inputs.

        **Arguments:**

        - `target`: the `Program` to add to (modified in place).
        - `prefix`: a non-empty name without '.' or outer spaces; the block's neuron ``name`` becomes
          ``f"{prefix}/{name}"``, its streams ``f"{prefix}/{name}.{port}"``.
        - `connect`: {block input port: an output stream of `target`, or a sequence of them}: each is linked to
          every input stream the port maps to. Ports left out stay unlinked (`Ports.inputs` names their streams).
        - `weight`, `trainable`: of the connecting links; `trainable` None (default) gives them the default of
          `Program.link`.

        The block's links (weights and trainable flags), initial values and neuron parameters are copied; stream
        names inside NETWORK-kind values (matrix entries of parameters and initial values) that name the block's
        neurons are prefixed too.

        **Returns:** a `Ports` mapping the block's output ports to their new stream names.

        Raises `ProgramError` (naming the port, stream or neuron) for an unknown block port in `connect`, a source
        that is an input port, a source whose kind differs from the block port's (both kinds named), a neuron name
        already in `target`, a kind name that means another kind in `target`, or a second Self neuron; nothing is
        added to `target` then. An unknown source stream raises `UnknownStreamError`.
        """
        if not isinstance(target, Program):
            raise ProgramError(f"include: target must be a dmm.Program, not {type(target).__name__}")
        if not isinstance(prefix, str) or not prefix or "." in prefix or prefix.strip() != prefix:
            raise ProgramError(f"include: bad prefix {prefix!r}: use a non-empty name without '.' or outer spaces")
        connect = dict(connect or {})
        unknown = [p for p in connect if p not in self.inputs]
        if unknown:
            raise ProgramError(
                f"include {prefix!r}: the block has no input port {unknown[0]!r}; its inputs: {list(self.inputs)}"
            )
        wires: list[tuple[str, str]] = []
        for port, srcs in connect.items():
            kind = self.kind(port)
            for s in (srcs,) if isinstance(srcs, str) else srcs:
                if not isinstance(s, str):
                    raise ProgramError(f"include {prefix!r}: block input {port!r} is connected to {s!r}, not a stream")
                got = target.port(s).kind
                if target.is_input(s):
                    raise ProgramError(
                        f"include {prefix!r}: block input {port!r} is connected to {s!r}, an input port; connect "
                        "output ports"
                    )
                if got != kind:
                    raise ProgramError(
                        f"include {prefix!r}: block input {port!r} has kind {kind!r} but {s!r} has kind {got!r}"
                    )
                wires.extend((s, f"{prefix}{SEPARATOR}{d}") for d in self.inputs[port])
        try:
            w = float(weight)
        except (TypeError, ValueError):
            raise ProgramError(f"include {prefix!r}: weight {weight!r} is not a number") from None
        if not np.isfinite(w):
            raise ProgramError(f"include {prefix!r}: weight {w} is not finite")
        twice = [pair for i, pair in enumerate(wires) if pair in wires[:i]]
        if twice:
            raise ProgramError(f"include {prefix!r}: the link {twice[0][0]!r} -> {twice[0][1]!r} would be made twice")
        names = {n: f"{prefix}{SEPARATOR}{n}" for n in self.program.neurons}
        taken = [new for new in names.values() if new in target.neurons]
        if taken:
            raise ProgramError(f"include {prefix!r}: neuron {taken[0]!r} is already in the target program")
        for k, kind in self.program.kinds.items():
            if k in target.kinds and target.kinds[k] != kind:
                raise ProgramError(
                    f"include {prefix!r}: the block's kind {kind!r} has the name of another kind in the target "
                    f"({target.kinds[k]!r})"
                )
        selfs = [n for n, v in self.program.neurons.items() if v.type.role == "self"]
        theirs = [n for n, v in target.neurons.items() if v.type.role == "self"]
        if selfs and theirs:
            raise ProgramError(
                f"include {prefix!r}: the block's Self neuron {selfs[0]!r} would be a second one ({theirs[0]!r} is in "
                "the target)"
            )

        def rename(stream: str) -> str:
            n, p = split_stream(stream)
            return f"{names[n]}.{p}" if n in names else stream

        def entries(value: Any) -> tuple:
            return tuple((rename(s), rename(d), v) for s, d, v in value)

        for n, neuron in self.program.neurons.items():
            net = [k for k, d in neuron.type.defaults.items() if isinstance(d, Kind)]
            if net:
                neuron = Neuron(neuron.type, {**neuron.params, **{k: entries(neuron.params[k]) for k in net}})
            target.add(names[n], neuron)
        for s, v in self.program.initial.items():
            target.set_initial(rename(s), entries(v) if isinstance(v, tuple) else v)
        pairs, weights, train = self.program.link_columns()
        target.link_many([rename(s) for s, _ in pairs], [rename(d) for _, d in pairs], weights, trainable=train)
        if wires:
            more = {} if trainable is None else {"trainable": bool(trainable)}  # None: as Program.link does
            target.link_many([s for s, _ in wires], [d for _, d in wires], w, **more)
        return Ports(
            prefix,
            {p: rename(s) for p, s in self.outputs.items()},
            {p: tuple(rename(s) for s in ss) for p, ss in self.inputs.items()},
        )
