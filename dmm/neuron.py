"""The neuron-type protocol and the registry of neuron types.

A *neuron type* says what one neuron computes: named input and output ports, each with a `Kind`; a pure function
written for ONE neuron,

    fn(params: dict[str, Array], inputs: dict[str, Array], ctx: Context) -> dict[str, Array]

with ``inputs[p]`` of shape ``kind(p).shape`` for every input port and a result with one array of shape
``kind(q).shape`` for every output port; and optional per-neuron parameters (given by default values; some
trainable). A type holds no state of its own: whatever a neuron remembers travels in a stream that loops back
through the network matrix, so every bit of machine state is visible, recordable and editable.

Types are made by *registered factories*. `neuron_type("name")` registers a factory; calling it with a
configuration (hashable, JSON-encodable keyword arguments such as a kind or a text) returns a `NeuronType`, equal to
any other type made from the same name and configuration. Program files store only the registered name and the
configuration, so loading a program never executes code from the file. Packages register their types when imported;
`dmm` finds them through the ``dmm.neurons`` entry-point group (see `lookup`).

A `Neuron` is one instance: a type plus its parameter values. Neurons of one type (and configuration) are run
together, one vectorised call per cycle, however many there are.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from .errors import ProgramError
from .kinds import NETWORK, Kind


class Context(NamedTuple):
    """What a neuron function may know besides its parameters and inputs.

    - `cycle`: int32 scalar, the number c of the cycle being computed (1 for the first).
    - `key`: a PRNG key for this neuron and cycle (stochastic types only; None otherwise).
    - `network`: the resolved `NetworkLayout` when the program has NETWORK-kind ports, else None (static).
    """

    cycle: Any
    key: Any
    network: Any


@dataclasses.dataclass(frozen=True)
class Port:
    name: str
    kind: Kind


def _freeze(value: Any, where: str) -> Any:
    """Turn a configuration value into a hashable, JSON-encodable form."""
    if value is None or isinstance(value, (bool, int, str, Kind)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ProgramError(f"{where}: configuration values must be finite, got {value}")
        return value
    if isinstance(value, (np.integer, np.floating)):
        return _freeze(value.item(), where)
    if isinstance(value, Mapping):
        return tuple((_freeze(k, where), _freeze(v, where)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v, where) for v in value)
    raise ProgramError(
        f"{where}: configuration value {value!r} of type {type(value).__name__} is not supported "
        "(use numbers, strings, kinds, and tuples or dicts of them; arrays belong in parameters)"
    )


@dataclasses.dataclass(frozen=True, eq=False)
class NeuronType:
    """A neuron type (see the module docstring). Made by a registered factory; compare by (name, config).

    **Fields:**

    - `name`, `config`: the registered factory's name and the (frozen) keyword arguments it was called with.
    - `inputs`, `outputs`: the ports, in order.
    - `fn`: the function of one neuron, `fn(params, inputs, ctx) -> outputs`.
    - `defaults`: default parameter values (NumPy arrays; their shapes are the parameter shapes).
    - `trainable`: the names of the parameters that train by default.
    - `stochastic`: the function uses `ctx.key`.
    - `role`: `"self"` for the Self neuron (whose output is the network matrix), else None.
    - `doc`: the factory's docstring (the formula).
    """

    name: str
    config: tuple
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    fn: Callable[..., dict]
    defaults: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    trainable: frozenset[str] = frozenset()
    stochastic: bool = False
    role: str | None = None
    doc: str = ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NeuronType) and (self.name, self.config) == (other.name, other.config)

    def __hash__(self) -> int:
        return hash((self.name, self.config))

    @property
    def ports(self) -> tuple[Port, ...]:
        return self.inputs + self.outputs

    @functools.cached_property
    def _port_index(self) -> dict[str, tuple[Port, bool]]:
        return {p.name: (p, i < len(self.inputs)) for i, p in enumerate(self.ports)}

    def port(self, name: str) -> Port | None:
        """The port called `name`, or None."""
        hit = self._port_index.get(name)
        return hit[0] if hit else None

    def is_input(self, name: str) -> bool:
        hit = self._port_index.get(name)
        return hit is not None and hit[1]

    @property
    def config_dict(self) -> dict[str, Any]:
        return dict(self.config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config)
        return f"{self.name}({args})"


Entries = tuple[tuple[str, str, float], ...]


def matrix_entries(value: Any, where: str) -> Entries:
    """Normalise network-matrix entries, given as ``{(source port, target port): value}`` or as
    ``((source, target, value), ...)``, to a tuple of ``(source, target, value)`` with finite float values."""
    items = value.items() if isinstance(value, Mapping) else value
    out = []
    try:
        for item in items:
            if len(item) == 2:
                (src, dst), v = item
            else:
                src, dst, v = item
            if not (isinstance(src, str) and isinstance(dst, str)):
                raise TypeError
            v = float(v)
            if not math.isfinite(v):
                raise ProgramError(f"{where}: matrix entry {src!r} -> {dst!r} is not finite")
            out.append((src, dst, v))
    except (TypeError, ValueError):
        raise ProgramError(
            f"{where}: give matrix entries as {{(source port, target port): value}}, not {value!r}"
        ) from None
    return tuple(out)


def make_type(
    inputs: Mapping[str, Kind] | None = None,
    outputs: Mapping[str, Kind] | None = None,
    *,
    fn: Callable[..., dict],
    defaults: Mapping[str, Any] | None = None,
    trainable: tuple[str, ...] | frozenset[str] = (),
    stochastic: bool = False,
    role: str | None = None,
) -> NeuronType:
    """Build the body of a neuron type inside a factory decorated with `neuron_type` (name and config are filled in
    by the decorator). `inputs` and `outputs` map port names to kinds, in order. A default parameter value may be
    `NETWORK`: the parameter is then a NETWORK-kind value, given per neuron as matrix entries
    ``{(source port, target port): value}`` and placed by `dmm.compile` (see `matrix_entries`)."""
    ins = tuple(Port(n, k) for n, k in (inputs or {}).items())
    outs = tuple(Port(n, k) for n, k in (outputs or {}).items())
    for k, v in (defaults or {}).items():
        if isinstance(v, Kind) and v != NETWORK:
            raise ProgramError(f"parameter {k!r}: the only kind a default may name is NETWORK, not {v!r}")
    defaults = {
        k: v if isinstance(v, Kind) else np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
        for k, v in (defaults or {}).items()
    }
    return NeuronType("", (), ins, outs, fn, defaults, frozenset(trainable), stochastic, role)


_REGISTRY: dict[str, Callable[..., NeuronType]] = {}
_ENTRY_POINTS_LOADED = False
_ENTRY_POINT_ERRORS: list[str] = []


def neuron_type(name: str) -> Callable[[Callable[..., NeuronType]], Callable[..., NeuronType]]:
    """Register a neuron-type factory under `name` (a decorator).

    The factory takes configuration keyword arguments and returns `make_type(...)`; the decorated factory returns a
    `NeuronType` whose `name` is `name` and whose `config` is the bound arguments (defaults applied), and validates
    the ports. Names are global: registering a name twice with different factories is an error.
    """
    if not isinstance(name, str) or not name:
        raise ProgramError(f"bad neuron type name {name!r}")

    def deco(factory: Callable[..., NeuronType]) -> Callable[..., NeuronType]:
        sig = inspect.signature(factory)
        kind_args = [k for k, p in sig.parameters.items() if p.annotation in (Kind, "Kind")]

        @functools.wraps(factory)
        def make(*args: Any, **kwargs: Any) -> NeuronType:
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError as e:
                raise ProgramError(f"neuron type {name!r}: {e}") from None
            bound.apply_defaults()
            for k in kind_args:  # a wrong argument where a kind belongs would fail deep inside the factory
                if not isinstance(bound.arguments[k], Kind):
                    got = bound.arguments[k]
                    raise ProgramError(
                        f"neuron type {name!r}: {k} must be a dmm.Kind (such as dmm.NUMBER or dmm.Kind('vec', (3,))), "
                        f"not {got!r} ({type(got).__name__})"
                    )
            config = tuple((k, _freeze(v, f"neuron type {name!r}, {k}")) for k, v in bound.arguments.items())
            body = factory(**dict(config))
            names = [p.name for p in body.ports]
            for p in body.ports:
                if not isinstance(p.name, str) or not p.name or "." in p.name:
                    raise ProgramError(f"neuron type {name!r}: bad port name {p.name!r}")
                if not isinstance(p.kind, Kind):
                    raise ProgramError(f"neuron type {name!r}: port {p.name!r} has no Kind")
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ProgramError(
                    f"neuron type {name!r}: port names {dup} repeat (inputs and outputs share one namespace)"
                )
            return dataclasses.replace(body, name=name, config=config, doc=inspect.getdoc(factory) or "")

        previous = _REGISTRY.get(name)
        if previous is not None and previous.__wrapped__.__qualname__ != factory.__qualname__:  # type: ignore[attr-defined]
            raise ProgramError(f"neuron type name {name!r} is already registered by {previous.__module__}")
        _REGISTRY[name] = make
        return make

    return deco


def lookup(name: str) -> Callable[..., NeuronType]:
    """The registered factory for a type name. Packages that declare a ``dmm.neurons`` entry point are imported
    the first time a name is missing (this is how `dmm` finds `neurons` and `attention` without importing them)."""
    global _ENTRY_POINTS_LOADED
    if name not in _REGISTRY and not _ENTRY_POINTS_LOADED:
        _ENTRY_POINTS_LOADED = True
        from importlib.metadata import entry_points

        for ep in entry_points(group="dmm.neurons"):
            try:
                importlib.import_module(ep.value)
            except ImportError as e:
                _ENTRY_POINT_ERRORS.append(f"{ep.value}: {type(e).__name__}: {e}")
    try:
        return _REGISTRY[name]
    except KeyError:
        failed = f" (packages that failed to import: {'; '.join(_ENTRY_POINT_ERRORS)})" if _ENTRY_POINT_ERRORS else ""
        raise ProgramError(
            f"unknown neuron type {name!r}: no package registered it (import the module that defines it){failed}"
        ) from None


def registered_types() -> dict[str, Callable[..., NeuronType]]:
    """A copy of the registry: type name -> factory."""
    return dict(_REGISTRY)


@dataclasses.dataclass(frozen=True, eq=False)
class Neuron:
    """One neuron of a program: a type and its parameter values (read-only NumPy arrays shaped like
    `type.defaults`; matrix entries for NETWORK-kind parameters)."""

    type: NeuronType
    params: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        params = {}
        given = dict(self.params)
        for k, default in self.type.defaults.items():
            if isinstance(default, Kind):  # a NETWORK-kind parameter: matrix entries, placed when compiled
                params[k] = matrix_entries(given.pop(k, ()), f"neuron type {self.type!r}, parameter {k!r}")
                continue
            v = np.asarray(given.pop(k, default), dtype=default.dtype)
            if v.shape != default.shape:
                raise ProgramError(
                    f"neuron type {self.type!r}: parameter {k!r} must have shape {default.shape}, got {v.shape}"
                )
            if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
                raise ProgramError(f"neuron type {self.type!r}: parameter {k!r} is not finite")
            v = v.copy()
            v.setflags(write=False)  # neurons are immutable, so programs can share them
            params[k] = v
        if given:
            raise ProgramError(f"neuron type {self.type!r} has no parameters {sorted(given)}")
        object.__setattr__(self, "params", params)
