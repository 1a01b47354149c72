"""What every attention mechanism shares: the `Mechanism` protocol (a frozen dataclass whose fields are the
options), validated options, the registry and its resolver, and the max-subtracted softmax every mechanism is
measured against.

A mechanism from another package subclasses `attention.Mechanism` as a frozen dataclass, declares each option with
`attention.option(default, check)` (a `Check`: `COUNT`, `POSITIVE`, `FRACTION`, `choice(...)` or its own),
implements `weights` (and `limit_weights` if it does not converge to softmax), sets ``stochastic = True`` if it
needs a PRNG key, and registers with ``@attention.register_mechanism("name")``; the attention neurons then take
``mechanism="name"`` and its ``options=``. A package that declares an ``attention.mechanisms`` entry point (naming
the module that registers) is imported the first time a name is missing, so program files that name its
mechanisms load without importing it first.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from dmm import ProgramError

from ..kinds import check_registration

Array = jax.Array


def masked(logits: Array, mask: Array | None) -> Array:
    """`logits` with the masked candidates (mask False) set to -inf; (..., n) float, `mask` (..., n) bool or None."""
    return logits if mask is None else jnp.where(mask, logits, -jnp.inf)


def row_max(u: Array, gradient: bool = False) -> Array:
    """max over the last axis (kept: (..., 1)), 0 where every candidate is masked. Without `gradient` it is a
    constant for differentiation, which is exact for shift-invariant functions such as softmax."""
    m = jnp.max(u, axis=-1, keepdims=True)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return m if gradient else jax.lax.stop_gradient(m)


@jax.jit
def softmax_weights(logits: Array, mask: Array | None = None) -> Array:
    """Softmax over the last axis in the max-subtracted form.

    w_j = exp(u_j - max u) / Σ_{k unmasked} exp(u_k - max u); masked candidates get 0, and a row with every
    candidate masked gets all zeros (not NaN).

    **Arguments:** `logits` (..., n) float; `mask` (..., n) bool or None (all candidates present).
    **Returns:** weights (..., n), same dtype as `logits`.
    """
    u = masked(logits, mask)
    e = jnp.exp(u - row_max(u))
    s = jnp.sum(e, axis=-1, keepdims=True)
    return e / jnp.where(s > 0, s, 1.0)


# --------------------------------------------------------------------------------------------------- options
class Check(NamedTuple):
    """A condition on an option value: `ok(value)`, and `must`, what the value must be (for the error message)."""

    must: str
    ok: Callable[[Any], bool]


COUNT = Check("an int >= 1", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1)
POSITIVE = Check("a positive number", lambda v: isinstance(v, (int, float)) and v > 0 and math.isfinite(v))
FRACTION = Check("in (0, 1]", lambda v: isinstance(v, (int, float)) and 0 < v <= 1)


def choice(*values: Any) -> Check:
    """The value is one of `values`."""
    return Check(", ".join(map(repr, values[:-1])) + f" or {values[-1]!r}", lambda v: v in values)


def option(default: Any, check: Check) -> Any:
    """A mechanism option: a dataclass field with its `default`, validated by `check` when the mechanism is built."""
    return dataclasses.field(default=default, metadata={"check": check})


# ------------------------------------------------------------------------------------------------- protocol
@dataclasses.dataclass(frozen=True)
class Mechanism:
    """An attention mechanism: a frozen dataclass whose fields are its options, validated at construction (a bad
    value raises `dmm.ProgramError` naming the mechanism and the option).

    - `name` (class attribute): the registered name; `stochastic` (class attribute): `weights` needs a PRNG key.
    - `weights(logits, mask, key)`: non-negative weights over the last axis.
    - `limit_weights(logits, mask)`: what the weights converge to as the mechanism's count parameter grows
      (K cycles, S steps), the other options fixed; softmax unless a mechanism says otherwise.
    """

    name: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check, value = f.metadata.get("check"), getattr(self, f.name)
            if check is not None and not check.ok(value):
                raise ProgramError(f"mechanism {self.name!r}: {f.name} must be {check.must}, not {value!r}")

    @property
    def options(self) -> dict[str, Any]:
        """The options, by name (every field, defaults included)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def weights(self, logits: Array, mask: Array | None = None, key: Array | None = None) -> Array:
        """The weights over the candidates.

        **Arguments:** `logits` (..., n) float; `mask` (..., n) bool or None; `key` a PRNG key (used if
        `stochastic`).
        **Returns:** weights (..., n), non-negative, 0 for masked candidates.
        """
        raise NotImplementedError(f"mechanism {self.name!r} does not define weights")

    def limit_weights(self, logits: Array, mask: Array | None = None) -> Array:
        """The weights' limit as the count parameter grows: softmax(logits) unless overridden. Shapes as `weights`."""
        return softmax_weights(logits, mask)


# ------------------------------------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Mechanism]] = {}
_ENTRY_POINTS_LOADED = False
_ENTRY_POINT_ERRORS: list[str] = []


def register_mechanism(name: str) -> Callable[[type[Mechanism]], type[Mechanism]]:
    """Register a `Mechanism` subclass under `name` (a class decorator; it sets the class's `name`). Names are
    global: registering a name twice with different classes is an error."""
    if not isinstance(name, str) or not name:
        raise ProgramError(f"bad attention mechanism name {name!r}")

    def deco(cls: type[Mechanism]) -> type[Mechanism]:
        check_registration(_REGISTRY, name, cls, Mechanism, "attention mechanism")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def registered_mechanisms() -> dict[str, type[Mechanism]]:
    """A copy of the registry: mechanism name -> class."""
    return dict(_REGISTRY)


def lookup_mechanism(name: str, where: str = "attention") -> type[Mechanism]:
    """The registered class for a mechanism name. Packages that declare an ``attention.mechanisms`` entry point
    are imported the first time a name is missing. Raises `dmm.ProgramError` naming `where` for an unknown name."""
    global _ENTRY_POINTS_LOADED
    if name not in _REGISTRY and not _ENTRY_POINTS_LOADED:
        _ENTRY_POINTS_LOADED = True
        for ep in importlib.metadata.entry_points(group="attention.mechanisms"):
            try:
                ep.load()
            except ImportError as e:
                _ENTRY_POINT_ERRORS.append(f"{ep.value}: {type(e).__name__}: {e}")
    if name not in _REGISTRY:
        failed = f" (packages that failed to import: {'; '.join(_ENTRY_POINT_ERRORS)})" if _ENTRY_POINT_ERRORS else ""
        raise ProgramError(f"{where}: unknown attention mechanism {name!r}; known: {list(_REGISTRY)}{failed}")
    return _REGISTRY[name]


def mechanism(name: str = "softmax", options: Mapping[str, Any] | tuple = (), where: str = "attention") -> Mechanism:
    """Resolve a mechanism name and its options (a dict, or the tuple of pairs a neuron configuration stores) to a
    mechanism object.

    Raises `dmm.ProgramError` naming `where` for an unknown mechanism, an unknown option or a bad value.
    """
    cls = lookup_mechanism(name, where)
    given = dict(options)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ProgramError(f"{where}: mechanism {name!r} has no options {unknown}; its options: {sorted(known)}")
    try:
        return cls(**given)
    except ProgramError as e:
        raise ProgramError(f"{where}: {e}") from None
