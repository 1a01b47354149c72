"""Token mixers: one name selects a sequence mixer, multi-head, in both of its forms.

A *mixer* is what a Transformer layer puts where softmax attention goes. `mixer(name, heads=H, **options)` returns
a frozen `Mixer` (its fields are its validated options) that builds the mixer's two neuron types:

- `Mixer.sequence(q_kind, v_kind, causal=True)`: the **sequence form**, the whole sequence as (L × d) matrix
  streams, one neuron call per sequence;
- `Mixer.token(key_kind, value_kind, capacity=...)`: the **token form**, one token per cycle, (d,) vectors, with
  the cache or fast weights in a `state` output that loops back to `state_in` (`add_with_state`, or
  `Mixer.add_token`); `Mixer.state_kind` and `Mixer.initial_state` describe that state.

For a deterministic mixer the token form run for L cycles (from the initial state) outputs, at cycle t, row t of
the causal sequence form on the L tokens it received. The mixers (`MIXERS`):

| name | class | inputs | formula (per head) |
|---|---|---|---|
| ``"softmax"``, ``"race"``, ``"oscillator"``, ``"rate"`` (any registered mechanism) | `DotProductMixer` | q, k, v | y_t = Σ_{j≤t} w_tj v_j, w_t = mechanism(scale · K q_t) |
| ``"linear"`` | `LinearMixer` | q, k, v | y_t = Σ_{j≤t} a_tj v_j / (Σ_{j≤t} a_tj + eps), a_tj = φ(q_t)·φ(k_j) |
| ``"delta"`` | `DeltaMixer` | q, k, v, beta | W_t = W_{t-1} + σ(β_t)(v_t - W_{t-1}k̂_t) ⊗ k̂_t, y_t = W_t q̂_t |
| ``"srwm"`` | `SRWMMixer` | x | (y_t, q_t, k_t, β_t) = W_{t-1} x_t; W_t = W_{t-1} + σ(β_t)(W_{t-1}(s(q_t) - s(k_t))) ⊗ s(k_t) |

Each mixer's `inputs` names its input ports (besides `state_in` and a gated token form's `write`) and `output` its
output port, so a builder can wire any of them; read the port kinds from the neuron type (``t.port("beta").kind``).
Other packages add mixers with `register_mixer`; a newly registered attention mechanism is a mixer name at once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import numpy as np

from dmm import Kind, Neuron, NeuronType, Program, ProgramError

from . import functional as F
from .fastweights import (
    delta_matrix_attention,
    delta_rule,
    linear_attention,
    linear_matrix_attention,
    srwm_init,
    srwm_matrix,
    srwm_type,
)
from .mechanisms import mechanism as resolve
from .mechanisms import registered_mechanisms
from .mechanisms.base import lookup_mechanism
from .kinds import check_registration
from .memory import add_with_state, kv_memory
from .softmax import matrix_attention

MIXERS: tuple[str, ...] = ("softmax", "race", "oscillator", "rate", "linear", "delta", "srwm")
"""The names of the built-in mixers (`registered_mixers` lists every registered one)."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ------------------------------------------------------------------------------------------------- protocol
@dataclasses.dataclass(frozen=True)
class Mixer:
    """A sequence mixer with `heads` H ≥ 1 (a frozen dataclass; its fields are its options, validated at
    construction: a bad value raises `dmm.ProgramError` naming the mixer and the option).

    Head h of every form uses the h-th of H equal column blocks of each input (d/H columns) and writes the h-th
    block of the output; H must divide the widths given to `sequence` and `token`.

    - `inputs`, `output` (class attributes): the input port names (besides `state_in`, and `write` of a gated
      token form) and the output port name of both forms.
    - `constant_state` (class attribute): the token form's state has a fixed size (no `capacity`).
    """

    registered_name: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ("q", "k", "v")
    output: ClassVar[str] = "out"
    constant_state: ClassVar[bool] = True

    heads: int = 1

    def __post_init__(self) -> None:
        if not _is_int(self.heads) or self.heads < 1:
            raise ProgramError(f"mixer {self.name!r}: heads must be an int >= 1, not {self.heads!r}")

    # ------------------------------------------------------------------ naming
    @property
    def name(self) -> str:
        """The name `mixer` selects this mixer by."""
        return self.registered_name

    @property
    def options(self) -> dict[str, Any]:
        """Every option by name (defaults included), such that ``mixer(m.name, **m.options) == m``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def stochastic(self) -> bool:
        """Whether the neuron types need a PRNG key (`run(..., key=...)`)."""
        return False

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], where: str = "mixer") -> Mixer:
        """The mixer of this class called `name` with `options` (option name -> value); raises
        `dmm.ProgramError` naming `where` for an unknown option or a bad value."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ProgramError(f"{where}: mixer {name!r} has no options {unknown}; its options: {sorted(known)}")
        try:
            return cls(**options)
        except ProgramError as e:
            raise ProgramError(f"{where}: {e}") from None

    # ------------------------------------------------------------------ the two forms
    def sequence(self, q_kind: Kind, v_kind: Kind, *, causal: bool = True) -> NeuronType:
        """The sequence-form neuron type: inputs `inputs` as (L, d) matrix streams (q and k of `q_kind`
        (L, d_k), v of `v_kind` (L, d_v); SRWM: x of `q_kind`), output `output` of `v_kind` (L, d_v). With
        `causal`, row t depends on rows ≤ t only (the recurrent mixers are causal only)."""
        raise NotImplementedError

    def token(self, key_kind: Kind, value_kind: Kind, *, capacity: int | None = None, gated: bool = False) -> NeuronType:
        """The token-form neuron type: inputs `inputs` as vectors (q, k of `key_kind` (d_k,), v of `value_kind`
        (d_v,); SRWM: x of `key_kind`), `state_in` and, with `gated`, a `write` number (the token is stored only
        if write > 1/2, or with weight `write`, as the underlying neuron says); outputs `output` (`value_kind`)
        and `state`. `capacity` (the number of tokens a KV cache holds) is needed by the cache mixers and ignored
        by the fixed-size ones (`constant_state`)."""
        raise NotImplementedError

    def state_kind(self, key_kind: Kind, value_kind: Kind, *, capacity: int | None = None) -> Kind:
        """The kind of the token form's `state` (and `state_in`) stream."""
        return self.token(key_kind, value_kind, capacity=capacity).port("state_in").kind

    def initial_state(self, key_kind: Kind, value_kind: Kind, *, capacity: int | None = None) -> np.ndarray:
        """The token form's state before the first token (float64 NumPy, `state_kind`'s shape): zeros for every
        built-in mixer (an empty cache, zero fast weights, ΔW = 0), the programs' default initial output."""
        return np.zeros(self.state_kind(key_kind, value_kind, capacity=capacity).shape)

    def init_params(self, q_kind: Kind, v_kind: Kind, key: jax.Array | None = None) -> dict[str, np.ndarray]:
        """Initial neuron parameters, valid for both forms (the widths are the kinds' last axes): {} for the
        mixers without parameters."""
        return {}

    def add_token(
        self,
        program: Program,
        name: str,
        key_kind: Kind,
        value_kind: Kind,
        *,
        capacity: int | None = None,
        gated: bool = False,
        key: jax.Array | None = None,
    ) -> NeuronType:
        """Add the token form to `program` as neuron `name` (parameters from `init_params` with `key`), with
        its `state` -> `state_in` loop (`add_with_state`) and `initial_state`. Returns the neuron type."""
        t = self.token(key_kind, value_kind, capacity=capacity, gated=gated)
        neuron = Neuron(t, self.init_params(key_kind, value_kind, key))
        initial = {"state": self.initial_state(key_kind, value_kind, capacity=capacity)}
        add_with_state(program, name, neuron, initial=initial)
        return t

    # ------------------------------------------------------------------ helpers for subclasses
    def _where(self, form: str) -> str:
        return f"mixer {self.name!r} ({form} form)"

    def _causal_only(self, causal: bool) -> None:
        if causal is not True:
            raise ProgramError(f"{self._where('sequence')}: the mixer is recurrent, hence causal; causal={causal!r} is not available")

    def _check_capacity(self, capacity: Any, required: bool) -> None:
        if capacity is None:
            if required:
                raise ProgramError(f"{self._where('token')}: a KV cache needs capacity=C (an int >= 1, the tokens it holds)")
        elif not _is_int(capacity) or capacity < 1:
            raise ProgramError(f"{self._where('token')}: capacity must be an int >= 1, not {capacity!r}")


# ------------------------------------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Mixer]] = {}


def register_mixer(name: str) -> Callable[[type[Mixer]], type[Mixer]]:
    """Register a `Mixer` subclass (a frozen dataclass) under `name` (a class decorator; it sets the class's
    `registered_name`). Names are global and may not be an attention mechanism's name (those select
    `DotProductMixer`)."""
    if not isinstance(name, str) or not name:
        raise ProgramError(f"bad mixer name {name!r}")

    def deco(cls: type[Mixer]) -> type[Mixer]:
        check_registration(_REGISTRY, name, cls, Mixer, "mixer")
        if name in registered_mechanisms():
            raise ProgramError(f"mixer name {name!r} is an attention mechanism's name (it selects DotProductMixer)")
        cls.registered_name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def registered_mixers() -> dict[str, type[Mixer]]:
    """Every mixer name -> its class: each registered attention mechanism (`DotProductMixer`) and each
    registered mixer."""
    return {**{n: DotProductMixer for n in registered_mechanisms()}, **_REGISTRY}


def lookup_mixer(name: str, where: str = "mixer") -> type[Mixer]:
    """The class for a mixer name: a registered mixer, else `DotProductMixer` for an attention mechanism's name
    (packages declaring mechanisms by entry point are imported on a miss). Raises `dmm.ProgramError` naming
    `where` for an unknown name."""
    if not isinstance(name, str):
        raise ProgramError(f"{where}: a mixer is a name or a Mixer, not {name!r}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    try:
        lookup_mechanism(name, where)
    except ProgramError:
        raise ProgramError(f"{where}: unknown mixer {name!r}; known: {list(registered_mixers())}") from None
    return DotProductMixer


def mixer(spec: str | Mixer = "softmax", heads: int | None = None, **options: Any) -> Mixer:
    """Select a mixer: by name (`MIXERS`, or any registered mixer or attention mechanism) with `heads` H
    (default 1) and its options, or a `Mixer` itself (returned as is, or with `heads` and `options` replaced).

    Examples: ``mixer("delta", heads=4)``, ``mixer("race", heads=2, cycles=16)`` (a mechanism's options go to
    the mechanism), ``mixer("linear", feature="dpfp", nu=2)``, ``mixer(m, heads=8)``.

    Raises `dmm.ProgramError` for an unknown name, an unknown option or a bad value.
    """
    extra = {**options, **({} if heads is None else {"heads": heads})}
    if isinstance(spec, Mixer):
        if not extra:
            return spec
        return type(spec).from_options(spec.name, {**spec.options, **extra})
    cls = lookup_mixer(spec)
    return cls.from_options(spec, extra)


# --------------------------------------------------------------------------------------- the built-in mixers
@dataclasses.dataclass(frozen=True)
class DotProductMixer(Mixer):
    """Scaled dot-product attention with the weights of an attention `mechanism` (softmax, race, oscillator,
    rate, or any registered one), per head:

        y_t = Σ_{j ≤ t} w_tj v_j,   w_t = mechanism(scale · (q_t · k_j)_j)   (softmax: max-subtracted)

    `scale` defaults to 1/√(d_k/H); `mechanism_options` are the mechanism's options (all of them, defaults
    included; give them to `mixer` by name). Sequence form: `matrix_attention` (with `causal`); token form:
    `kv_memory`, a KV cache of `capacity` C slots whose unused slots are masked (a full cache overwrites its
    oldest slot, so past C tokens the token form attends over the last C only). Stochastic with "race"."""

    constant_state: ClassVar[bool] = False

    mechanism: str = "softmax"
    scale: float | None = None
    mechanism_options: tuple = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        where = f"mixer {self.mechanism!r}"
        if self.scale is not None and not (
            isinstance(self.scale, (int, float)) and not isinstance(self.scale, bool) and math.isfinite(self.scale) and self.scale > 0
        ):
            raise ProgramError(f"{where}: scale must be None or a positive number, not {self.scale!r}")
        if not isinstance(self.mechanism_options, (tuple, Mapping)):
            raise ProgramError(f"{where}: mechanism_options must be a dict or pairs, not {self.mechanism_options!r}")
        mech = resolve(self.mechanism, self.mechanism_options, where)
        object.__setattr__(self, "mechanism_options", tuple(sorted(mech.options.items())))

    @property
    def name(self) -> str:
        return self.mechanism

    @property
    def options(self) -> dict[str, Any]:
        """`heads`, `scale` and the mechanism's options, flat."""
        return {"heads": self.heads, "scale": self.scale, **dict(self.mechanism_options)}

    @property
    def stochastic(self) -> bool:
        return resolve(self.mechanism, self.mechanism_options).stochastic

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], where: str = "mixer") -> Mixer:
        """`heads` and `scale` are the mixer's; every other option is the mechanism `name`'s."""
        opts = dict(options)
        own = {k: opts.pop(k) for k in ("heads", "scale") if k in opts}
        if "mechanism" in opts or "mechanism_options" in opts:
            raise ProgramError(f"{where}: mixer {name!r}: the mechanism is the mixer's name; give its options by name")
        try:
            return cls(mechanism=name, mechanism_options=tuple(sorted(opts.items())), **own)
        except ProgramError as e:
            raise ProgramError(f"{where}: {e}") from None

    def _config(self) -> dict[str, Any]:
        return {"scale": self.scale, "mechanism": self.mechanism, "options": self.mechanism_options, "heads": self.heads}

    def sequence(self, q_kind: Kind, v_kind: Kind, *, causal: bool = True) -> NeuronType:
        return matrix_attention(q_kind, q_kind, v_kind, causal=bool(causal), **self._config())

    def token(self, key_kind: Kind, value_kind: Kind, *, capacity: int | None = None, gated: bool = False) -> NeuronType:
        self._check_capacity(capacity, required=True)
        return kv_memory(key_kind, value_kind, capacity, gated=gated, **self._config())


def _check_feature(m: Mixer, feature: str, nu: int) -> None:
    F.feature_map(feature, nu, f"mixer {m.name!r}")


@register_mixer("linear")
@dataclasses.dataclass(frozen=True)
class LinearMixer(Mixer):
    """Linear attention (Katharopoulos+ 2020), per head, with the feature map φ = `feature` ("elu1" = elu + 1,
    the default; "dpfp" with ν = `nu`; "identity") and sum normalisation:

        y_t = Σ_{j ≤ t} a_tj v_j / (Σ_{j ≤ t} a_tj + eps),   a_tj = φ(q_t) · φ(k_j)

    Sequence form: `linear_matrix_attention` (the parallel form; all j with causal=False); token form:
    `linear_attention` (the recurrent form, state [S | z] with S = Σ φ(k_j) v_jᵀ, z = Σ φ(k_j))."""

    feature: str = "elu1"
    nu: int = 1
    eps: float = 1e-6

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_feature(self, self.feature, self.nu)
        if not isinstance(self.eps, (int, float)) or isinstance(self.eps, bool) or not (0 <= self.eps < math.inf):
            raise ProgramError(f"mixer {self.name!r}: eps must be a non-negative number, not {self.eps!r}")

    def sequence(self, q_kind: Kind, v_kind: Kind, *, causal: bool = True) -> NeuronType:
        return linear_matrix_attention(q_kind, v_kind, bool(causal), self.feature, self.nu, self.eps, heads=self.heads)

    def token(self, key_kind: Kind, value_kind: Kind, *, capacity: int | None = None, gated: bool = False) -> NeuronType:
        self._check_capacity(capacity, required=False)
        return linear_attention(key_kind, value_kind, self.feature, self.nu, self.eps, gated=gated, heads=self.heads)


@register_mixer("delta")
@dataclasses.dataclass(frozen=True)
class DeltaMixer(Mixer):
    """The delta-rule fast-weight programmer (Schlag, Irie & Schmidhuber 2021), per head, with k̂ = φ(k)/Σφ(k),
    q̂ = φ(q)/Σφ(q) (φ = `feature`, elu + 1 by default, then sum normalisation) and the learning-rate logit
    β (input `beta`: one per head and token):

        W_t = W_{t-1} + σ(β_t) (v_t - W_{t-1} k̂_t) ⊗ k̂_t,   y_t = W_t q̂_t,   W_0 = 0

    Causal only. Sequence form: `delta_matrix_attention` (`beta` (L, H)); token form: `delta_rule` (`beta` a
    number for one head, (H,) for H; state the fast weights)."""

    inputs: ClassVar[tuple[str, ...]] = ("q", "k", "v", "beta")

    feature: str = "elu1"
    nu: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_feature(self, self.feature, self.nu)

    def sequence(self, q_kind: Kind, v_kind: Kind, *, causal: bool = True) -> NeuronType:
        self._causal_only(causal)
        return delta_matrix_attention(q_kind, v_kind, self.feature, self.nu, heads=self.heads)

    def token(self, key_kind: Kind, value_kind: Kind, *, capacity: int | None = None, gated: bool = False) -> NeuronType:
        self._check_capacity(capacity, required=False)
        return delta_rule(key_kind, value_kind, self.feature, self.nu, gated=gated, heads=self.heads)


@register_mixer("srwm")
@dataclasses.dataclass(frozen=True)
class SRWMMixer(Mixer):
    """The modern self-referential weight matrix (Irie, Schlag, Csordás & Schmidhuber 2022), per head: one
    input x (d,), no separate q, k, v; with s = softmax and W_0 the trainable parameter `w0`,

        (y_t, q_t, k_t, β_t) = W_{t-1} x_t,   W_t = W_{t-1} + σ(β_t) ⊙_rows (W_{t-1} s(q_t) - W_{t-1} s(k_t)) ⊗ s(k_t)

    with `rates` = 4 learning rates (one per row block y, q, k, β; the official code) or 1. In `sequence` and
    `token` the first kind is x's, the second y's. Causal only. Sequence form: `srwm_matrix`; token form:
    `srwm` (state ΔW = W_{t-1} - W_0). `init_params` draws W_0 ~ N(0, 1/d_h) from a key (zeros without one)."""

    inputs: ClassVar[tuple[str, ...]] = ("x",)
    output: ClassVar[str] = "y"

    rates: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rates not in (1, 4) or isinstance(self.rates, bool):
            raise ProgramError(f"mixer {self.name!r}: rates must be 1 or 4, not {self.rates!r}")

    def sequence(self, q_kind: Kind, v_kind: Kind, *, causal: bool = True) -> NeuronType:
        self._causal_only(causal)
        return srwm_matrix(q_kind, v_kind, self.rates, heads=self.heads)

    def token(self, key_kind: Kind, value_kind: Kind, *, capacity: int | None = None, gated: bool = False) -> NeuronType:
        self._check_capacity(capacity, required=False)
        return srwm_type(key_kind, value_kind, self.rates, heads=self.heads, gated=gated)

    def init_params(self, q_kind: Kind, v_kind: Kind, key: jax.Array | None = None) -> dict[str, np.ndarray]:
        """{"w0": W_0 ~ N(0, 1/d_h)} drawn with `key` (`srwm_init`), or {} (W_0 = 0) without a key."""
        return {} if key is None else {"w0": srwm_init(q_kind, v_kind, self.rates, self.heads, key=key)}

