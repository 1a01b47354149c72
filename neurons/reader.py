"""A reader: an external input with an asynchronous event schedule (the Clojure engine's ``reader`` neuron)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from dmm import NUMBER, Kind, Neuron, ProgramError, make_type, neuron_type, vvalues


def _value(kind: Kind, v: Any, where: str) -> np.ndarray:
    """A value of `kind`: an array of its shape, or a V-value (nested dict) for a keyed or number kind."""
    if isinstance(v, Mapping):
        return np.asarray(vvalues.flatten(kind, v), np.float64)
    a = np.asarray(v, np.float64)
    if a.shape != kind.shape:
        raise ProgramError(f"{where}: a value of shape {a.shape} is not of kind {kind.name!r} {kind.shape}")
    if not np.all(np.isfinite(a)):
        raise ProgramError(f"{where}: the value is not finite")
    return a


@neuron_type("reader")
def reader_type(kind: Kind = NUMBER, events: Any = ()):
    """A reader (source): y.out = v_e at every cycle e of the schedule `events` ((cycle, flat value), ...), else
    the `default` parameter. A caller's `run(inputs={"name.out": ...})` still overrides it.

    An asynchronous channel (values that arrive now and then) becomes this per-cycle schedule; an event at cycle e
    reaches a neuron one link away at cycle e + 1. Use `reader` to build one from {cycle: value}.

    The schedule is configuration, so readers with different schedules are different types and compile as separate
    groups: meant for a few asynchronous channels. For many sources with per-cycle values, use `neurons.external`
    and feed them through `run(inputs=...)`.
    """
    sched = []
    for item in events:
        try:
            c, flat = item
            c = int(c)
            v = np.asarray(flat, np.float64).reshape(kind.shape)
        except (TypeError, ValueError):
            raise ProgramError(f"reader: an event is (cycle, flat value of kind {kind.name!r}), not {item!r}") from None
        if c < 1:
            raise ProgramError(f"reader: event cycle {c} is not a cycle (cycles start at 1)")
        sched.append((c, v))
    cycles = [c for c, _ in sched]
    if len(set(cycles)) != len(cycles):
        raise ProgramError(f"reader: two events at one cycle ({sorted(cycles)})")

    def fn(p, x, ctx):
        if not sched:
            return {"out": p["default"]}
        values = jnp.asarray(np.stack([v for _, v in sched]), p["default"].dtype)
        hit = ctx.cycle == jnp.asarray(cycles)
        return {"out": jnp.where(jnp.any(hit), jnp.tensordot(hit.astype(values.dtype), values, axes=1), p["default"])}

    return make_type({}, {"out": kind}, fn=fn, defaults={"default": np.zeros(kind.shape)})


def reader(kind: Kind = NUMBER, events: Mapping[int, Any] | None = None, default: Any = None) -> Neuron:
    """A reader of `kind` emitting `events` {cycle: value} at their cycles and `default` (zeros if None) otherwise.

    Values are arrays of the kind's shape, or V-values (nested dicts) for a keyed kind, e.g.
    `reader(kind, {5: {"a": 1}}, default={"step": 1})`.
    """
    events = events or {}
    flat = tuple(
        (int(c), tuple(_value(kind, v, f"reader event at cycle {c}").reshape(-1).tolist())) for c, v in sorted(events.items())
    )
    params = {} if default is None else {"default": _value(kind, default, "reader default")}
    return Neuron(reader_type(kind, flat), params)
