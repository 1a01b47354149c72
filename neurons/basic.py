"""Memory, sources and sinks: identity, accumulator, timer, const, external input, sink."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dmm import NUMBER, Kind, Neuron, ProgramError, make_type, neuron_type


@neuron_type("identity")
def identity(kind: Kind = NUMBER):
    """y.out = x.in. With a weight-1 self-link it is a register (it holds its value)."""
    return make_type({"in": kind}, {"out": kind}, fn=lambda p, x, ctx: {"out": x["in"]})


@neuron_type("accumulator")
def accumulator(kind: Kind = NUMBER):
    """y.out = x.accum + x.delta. With a weight-1 link out -> accum it is a memory that adds up its deltas."""
    return make_type({"accum": kind, "delta": kind}, {"out": kind}, fn=lambda p, x, ctx: {"out": x["accum"] + x["delta"]})


@neuron_type("timer")
def timer():
    """y.out = x.in + 1 (number kind). With a weight-1 self-link and Y_0 = 0 it outputs c at cycle c."""
    return make_type({"in": NUMBER}, {"out": NUMBER}, fn=lambda p, x, ctx: {"out": x["in"] + 1.0})


@neuron_type("const")
def const_type(kind: Kind = NUMBER):
    """y.out = value (a parameter, not trained by default). No inputs."""
    return make_type({}, {"out": kind}, fn=lambda p, x, ctx: {"out": p["value"]}, defaults={"value": np.zeros(kind.shape)})


def const(value: Any = 1.0, kind: Kind | None = None) -> Neuron:
    """A constant source: y.out = `value` every cycle. `kind` defaults to NUMBER for a scalar; give it for arrays.

    Example: `neurons.const(1.0)`, `neurons.const(chars.onehot("."), chars)`.
    """
    value = np.asarray(value, np.float64)
    if kind is None:
        if value.shape != ():
            raise ProgramError(f"const: a value of shape {value.shape} needs an explicit kind")
        kind = NUMBER
    return Neuron(const_type(kind), {"value": value})


@neuron_type("external")
def external_type(kind: Kind = NUMBER):
    """An external input (source): y.out = the caller's value for this cycle (`run(inputs={"n.out": ...})`), else
    the `default` parameter. Asynchronous channels become a per-cycle input schedule."""
    return make_type({}, {"out": kind}, fn=lambda p, x, ctx: {"out": p["default"]}, defaults={"default": np.zeros(kind.shape)})


def external(kind: Kind = NUMBER, default: Any = None) -> Neuron:
    """An external input of `kind` whose value when the caller gives none is `default` (zeros if None)."""
    t = external_type(kind)
    return Neuron(t, {} if default is None else {"default": np.asarray(default, np.float64)})


@neuron_type("sink")
def sink(ports: Mapping[str, Kind] | Sequence[str] = ("in",)):
    """A neuron with inputs only (no outputs): its input streams are the program's results, recorded by default.

    `ports`: input port names (number kind) or a mapping {port: kind}.
    """
    items = tuple(ports.items()) if isinstance(ports, Mapping) else tuple(ports)
    inputs = dict(p if isinstance(p, tuple) else (p, NUMBER) for p in items)
    return make_type(inputs, {}, fn=lambda p, x, ctx: {})
