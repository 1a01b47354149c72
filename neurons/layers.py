"""The layer vocabulary of a Transformer: dense maps, token and position embeddings, LayerNorm, RMSNorm, GELU,
SiLU and the causal shift, each as a neuron type in two forms.

- The **token form** works on a VECTOR kind (d,): one token per cycle.
- The **sequence form** works on a MATRIX kind (L, d): the whole sequence in one value, the layer acting row by
  row on the last axis (row i is position i), never mixing rows (except `causal_shift`, whose point is to).

For a position-wise layer, the token form applied to row i equals row i of the sequence form with the same
parameters. Parameter names and shapes follow the plain-JAX Transformer of ``benchmarks/plain_transformer.py``
("weight" is (d_in, d_out), applied as x · weight + bias), so weights carry over name for name.

Every constructor returns a `dmm.Neuron`. Parameters are taken as given, else drawn from an explicit PRNG `key`
(always in float32, so a key gives the same values with or without float64 enabled), else left at the type's
default (zeros for weights and tables: set them later, e.g. with `Machine.set_param`). The schemes:

| parameter | scheme |
|---|---|
| dense "weight" (d_in, d_out) | normal, mean 0, std 1/√d_in (as `neurons.linear` and the plain-JAX baseline) |
| dense "bias" (d_out,) | zeros |
| embedding "table" (V, d), position "table" (L or max_len, d) | normal, mean 0, std `std` (default 0.02) |
| norm "scale" (d,) / "offset" (d,) | ones / zeros |

Normalisations compute their statistics in at least float32 (a bfloat16 machine gets float32 statistics), and
LayerNorm subtracts the mean before squaring (two passes), so a large common offset does not cancel the variance.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dmm import NUMBER, Kind, Neuron, ProgramError, make_type, neuron_type


def ids_kind(length: int | None = None) -> Kind:
    """The kind of a stream of token ids: `dmm.NUMBER` (one id per cycle) when `length` is None, else
    ``Kind("ids_{L}", (L,))`` (a sequence of L ids). Ids travel as floats holding integers (exact up to 2**24 in
    float32)."""
    if length is None:
        return NUMBER
    _check_count(length, "length", "ids_kind")
    return Kind(f"ids_{int(length)}", (int(length),))


def _check_count(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ProgramError(f"{where}: {what} must be a positive integer, not {value!r}")
    return int(value)


def _layer_kind(kind: Any, what: str, where: str) -> Kind:
    """`kind` if it is a vector kind (d,) or a matrix kind (L, d); else raise naming `where` and `what`."""
    if not isinstance(kind, Kind) or kind.shape is None or len(kind.shape) not in (1, 2):
        raise ProgramError(f"{where}: {what} must be a vector kind (d,) or a matrix kind (L, d), not {kind!r}")
    return kind


def _shaped_kind(kind: Any, what: str, where: str) -> Kind:
    if not isinstance(kind, Kind) or kind.shape is None:
        raise ProgramError(f"{where}: {what} must be a Kind with a shape, not {kind!r}")
    return kind


def _wide(dtype: Any) -> Any:
    """The dtype statistics are computed in: `dtype`, or float32 if that is narrower."""
    return jnp.float32 if jnp.finfo(dtype).bits < 32 else dtype


def _normal(key: jax.Array, shape: tuple[int, ...], std: float) -> np.ndarray:
    return np.asarray(jax.random.normal(key, shape, jnp.float32), np.float64) * std


def _given(value: Any) -> np.ndarray:
    return np.asarray(value, np.float64)


# ---------------------------------------------------------------------------------------------------------- dense


@neuron_type("dense")
def dense_type(in_kind: Kind, out_kind: Kind, use_bias: bool = True):
    """Position-wise affine map on the last axis: y.out[..., j] = Σ_i x.in[..., i] · weight[i, j] + bias[j].

    In kind (d_in,) → out kind (d_out,) (token form) or (L, d_in) → (L, d_out) (sequence form: each row mapped
    alone; rows never mix, unlike `neurons.linear`, which flattens the whole value). Parameters, both trainable:
    "weight" (d_in, d_out) and, when `use_bias`, "bias" (d_out,).
    """
    where = "neuron type 'dense'"
    _layer_kind(in_kind, "in_kind", where)
    _layer_kind(out_kind, "out_kind", where)
    if in_kind.shape[:-1] != out_kind.shape[:-1]:
        raise ProgramError(
            f"{where}: in_kind {in_kind!r} and out_kind {out_kind!r} must agree on every axis but the last "
            f"({in_kind.shape[:-1]} vs {out_kind.shape[:-1]})"
        )
    d_in, d_out = in_kind.shape[-1], out_kind.shape[-1]

    def fn(p, x, ctx):
        y = jnp.matmul(x["in"], p["weight"])
        return {"out": y + p["bias"] if use_bias else y}

    defaults = {"weight": np.zeros((d_in, d_out))}
    if use_bias:
        defaults["bias"] = np.zeros(d_out)
    return make_type({"in": in_kind}, {"out": out_kind}, fn=fn, defaults=defaults, trainable=tuple(defaults))


def dense(
    in_kind: Kind,
    out_kind: Kind,
    *,
    key: jax.Array | None = None,
    weight: Any = None,
    bias: Any = None,
    use_bias: bool = True,
) -> Neuron:
    """A `dense_type` neuron: y = x · weight + bias on the last axis (in port "in", out port "out").

    **Arguments:**

    - `in_kind`, `out_kind`: (d_in,) and (d_out,), or (L, d_in) and (L, d_out) (the same L).
    - `key`: draws "weight" ~ N(0, 1/d_in) (float32 draw) when `weight` is not given.
    - `weight`: (d_in, d_out) float, given; `bias`: (d_out,) float, given (default zeros).
    - `use_bias`: False leaves the bias out (y = x · weight); `bias` must then be None.

    With neither `weight` nor `key` the weight is zero. Wrong kinds or shapes raise `dmm.ProgramError`.
    """
    t = dense_type(in_kind, out_kind, use_bias=use_bias)
    if bias is not None and not use_bias:
        raise ProgramError("dense: bias given with use_bias=False")
    params = {}
    if weight is not None:
        params["weight"] = _given(weight)
    elif key is not None:
        d_in, d_out = in_kind.shape[-1], out_kind.shape[-1]
        params["weight"] = _normal(key, (d_in, d_out), 1.0 / math.sqrt(d_in))
    if bias is not None:
        params["bias"] = _given(bias)
    return Neuron(t, params)


# ------------------------------------------------------------------------------------------------------ embedding


def _lookup(table: jax.Array, ids: jax.Array) -> jax.Array:
    """Rows `ids` of `table` (any shape S → S + (d,)). Float ids are rounded to the nearest integer; ids outside
    [0, V) (after rounding), NaN or infinite give zero rows."""
    v = table.shape[0]
    if jnp.issubdtype(ids.dtype, jnp.integer):
        valid = (ids >= 0) & (ids < v)
        safe = jnp.where(valid, ids, jnp.zeros_like(ids))
    else:
        valid = (ids > -0.5) & (ids < v - 0.5)
        safe = jnp.where(valid, jnp.round(ids), jnp.zeros_like(ids)).astype(jnp.int32)
    rows = table[safe]
    return jnp.where(valid[..., None], rows, jnp.zeros_like(rows))


@neuron_type("embedding")
def embedding_type(vocab: int, in_kind: Kind, out_kind: Kind):
    """Token embedding with a trainable "table" (V, d): the input kind, relative to the output kind, says whether
    the input carries ids or one-hots.

    - **ids** (in kind shape = out kind shape without its last axis: () → (d,) per token, (L,) → (L, d) per
      sequence): y.out[..., :] = table[round(x.in[...])]. Ids are floats holding integers; an id outside
      [0, V) after rounding (−1 or −100 padding, say), NaN or ±inf gives a zero vector (no gradient flows to the ids).
    - **one-hots** (in kind (V,) → (d,), or (L, V) → (L, d)): y.out = x.in · table, a row of the table for a one-hot
      row, the weighted mixture for any other (differentiable in the input).
    """
    where = "neuron type 'embedding'"
    v = _check_count(vocab, "vocab", where)
    _layer_kind(out_kind, "out_kind", where)
    _shaped_kind(in_kind, "in_kind", where)
    lead = out_kind.shape[:-1]
    if in_kind.shape == lead:
        ids = True
    elif in_kind.shape == lead + (v,):
        ids = False
    else:
        raise ProgramError(
            f"{where}: in_kind {in_kind!r} does not fit out_kind {out_kind!r} with vocab {v}: give ids of shape "
            f"{lead} or one-hots of shape {lead + (v,)}"
        )

    def fn(p, x, ctx):
        table = p["table"]
        return {"out": _lookup(table, x["in"]) if ids else jnp.matmul(x["in"], table)}

    return make_type(
        {"in": in_kind}, {"out": out_kind}, fn=fn, defaults={"table": np.zeros((v, out_kind.shape[-1]))},
        trainable=("table",),
    )


def embedding(
    vocab: int,
    out_kind: Kind,
    *,
    in_kind: Kind | None = None,
    key: jax.Array | None = None,
    table: Any = None,
    std: float = 0.02,
) -> Neuron:
    """An `embedding_type` neuron (in port "in", out port "out"; formula there).

    **Arguments:**

    - `vocab`: V, the number of tokens; `out_kind`: (d,) (token form) or (L, d) (sequence form).
    - `in_kind`: the input's kind: ids (shape () or (L,)) or one-hots (shape (V,) or (L, V)); default ids,
      ``ids_kind()`` = NUMBER for the token form and ``ids_kind(L)`` for the sequence form.
    - `key`: draws "table" ~ N(0, std²) (float32 draw) when `table` is not given; `std` its standard deviation.
    - `table`: (V, d) float, given. With neither `table` nor `key` it is zero.
    """
    where = "embedding"
    _layer_kind(out_kind, "out_kind", where)
    if in_kind is None:
        in_kind = ids_kind(out_kind.shape[0] if len(out_kind.shape) == 2 else None)
    t = embedding_type(vocab, in_kind, out_kind)
    params = {}
    if table is not None:
        params["table"] = _given(table)
    elif key is not None:
        params["table"] = _normal(key, (int(vocab), out_kind.shape[-1]), _check_std(std, where))
    return Neuron(t, params)


def _check_std(std: Any, where: str) -> float:
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not (math.isfinite(std) and std > 0):
        raise ProgramError(f"{where}: std must be a positive number, not {std!r}")
    return float(std)


# ---------------------------------------------------------------------------------------------- position embedding


@neuron_type("position_embedding")
def position_embedding_type(kind: Kind, max_len: int | None = None, start: int | None = None):
    """Learned positions added to the input: y.out = x.in + (the position's row of the trainable "table").

    - **Sequence form** (kind (L, d)): y.out = x.in + table, "table" (L, d): row i gets position i. `max_len` is
      None or L; `start` must be None.
    - **Token form** (kind (d,)): y.out = x.in + table[t], "table" (max_len, d), `max_len` required, where the
      position t is
      - ``ctx.cycle − start`` when `start` is an int: the neuron sees position 0 at cycle `start` (a token fed
        to an external source at cycle s and reaching this neuron k links later has start = s + k);
      - else ``round(x.position)``, an extra NUMBER input port "position" (a counter, say).

      A position outside [0, max_len) adds nothing (y.out = x.in). The token form at position t equals row t of
      the sequence form with the same table.
    """
    where = "neuron type 'position_embedding'"
    _layer_kind(kind, "kind", where)
    if max_len is not None:
        _check_count(max_len, "max_len", where)
    if start is not None and (isinstance(start, bool) or not isinstance(start, int)):
        raise ProgramError(f"{where}: start must be an integer cycle or None, not {start!r}")
    d = kind.shape[-1]
    if len(kind.shape) == 2:
        if max_len not in (None, kind.shape[0]):
            raise ProgramError(f"{where}: the sequence form on {kind!r} has max_len {kind.shape[0]}, not {max_len}")
        if start is not None:
            raise ProgramError(f"{where}: the sequence form on {kind!r} takes no start (row i is position i)")

        def fn(p, x, ctx):
            return {"out": x["in"] + p["table"]}

        inputs = {"in": kind}
        rows = kind.shape[0]
    else:
        if max_len is None:
            raise ProgramError(f"{where}: the token form on {kind!r} needs max_len (the rows of its table)")

        def fn(p, x, ctx):
            t = x["position"] if start is None else jnp.asarray(ctx.cycle) - start
            return {"out": x["in"] + _lookup(p["table"], t)}

        inputs = {"in": kind} if start is not None else {"in": kind, "position": NUMBER}
        rows = max_len
    return make_type(inputs, {"out": kind}, fn=fn, defaults={"table": np.zeros((rows, d))}, trainable=("table",))


def position_embedding(
    kind: Kind,
    *,
    max_len: int | None = None,
    start: int | None = None,
    key: jax.Array | None = None,
    table: Any = None,
    std: float = 0.02,
) -> Neuron:
    """A `position_embedding_type` neuron (ports "in", in the token form without `start` also "position"; out port
    "out"; formula there).

    **Arguments:**

    - `kind`: (L, d) (sequence form) or (d,) (token form).
    - `max_len`: the rows of the table in the token form (required there); None or L in the sequence form.
    - `start`: token form: the cycle at which this neuron sees position 0 (position = cycle − start); None: the
      position comes from the "position" input port.
    - `key`: draws "table" ~ N(0, std²) (float32 draw) when `table` is not given; `std` its standard deviation.
    - `table`: (L or max_len, d) float, given. With neither `table` nor `key` it is zero.
    """
    t = position_embedding_type(kind, max_len=max_len, start=start)
    params = {}
    if table is not None:
        params["table"] = _given(table)
    elif key is not None:
        params["table"] = _normal(key, t.defaults["table"].shape, _check_std(std, "position_embedding"))
    return Neuron(t, params)


# ------------------------------------------------------------------------------------------------- normalisations


def _check_eps(eps: Any, where: str) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps >= 0):
        raise ProgramError(f"{where}: eps must be a finite number ≥ 0, not {eps!r}")
    return float(eps)


@neuron_type("layer_norm")
def layer_norm_type(kind: Kind, eps: float = 1e-5, use_scale: bool = True, use_offset: bool = True):
    """LayerNorm over the last axis (each row of a matrix kind alone):

        μ = mean_j x.in[..., j],  σ² = mean_j (x.in[..., j] − μ)²   (biased variance)
        y.out[..., j] = (x.in[..., j] − μ) / √(σ² + eps) · scale[j] + offset[j]

    Trainable "scale" (d,) (when `use_scale`; else 1) and "offset" (d,) (when `use_offset`; else 0).
    """
    where = "neuron type 'layer_norm'"
    _layer_kind(kind, "kind", where)
    eps = _check_eps(eps, where)

    def fn(p, x, ctx):
        v = x["in"]
        wide = _wide(v.dtype)
        z = v.astype(wide)
        centred = z - jnp.mean(z, axis=-1, keepdims=True)
        y = centred * jax.lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + eps)
        if use_scale:
            y = y * p["scale"].astype(wide)
        if use_offset:
            y = y + p["offset"].astype(wide)
        return {"out": y.astype(v.dtype)}

    d = kind.shape[-1]
    defaults = {}
    if use_scale:
        defaults["scale"] = np.ones(d)
    if use_offset:
        defaults["offset"] = np.zeros(d)
    return make_type({"in": kind}, {"out": kind}, fn=fn, defaults=defaults, trainable=tuple(defaults))


def layer_norm(
    kind: Kind,
    *,
    eps: float = 1e-5,
    use_scale: bool = True,
    use_offset: bool = True,
    scale: Any = None,
    offset: Any = None,
) -> Neuron:
    """A `layer_norm_type` neuron (port "in" → "out"; formula there) on `kind` (d,) or (L, d). `scale`, `offset`:
    (d,) floats, given (default ones and zeros)."""
    t = layer_norm_type(kind, eps=eps, use_scale=use_scale, use_offset=use_offset)
    return Neuron(t, _norm_params(t, "layer_norm", scale=scale, offset=offset))


def _norm_params(t, where: str, **given: Any) -> dict[str, np.ndarray]:
    params = {}
    for name, value in given.items():
        if value is None:
            continue
        if name not in t.defaults:
            raise ProgramError(f"{where}: {name} given with use_{name}=False")
        params[name] = _given(value)
    return params


@neuron_type("rms_norm")
def rms_norm_type(kind: Kind, eps: float = 1e-6, use_scale: bool = True):
    """RMSNorm over the last axis (each row of a matrix kind alone):

        y.out[..., j] = x.in[..., j] / √(mean_k x.in[..., k]² + eps) · scale[j]

    with a trainable "scale" (d,) when `use_scale` (else 1).
    """
    where = "neuron type 'rms_norm'"
    _layer_kind(kind, "kind", where)
    eps = _check_eps(eps, where)

    def fn(p, x, ctx):
        v = x["in"]
        wide = _wide(v.dtype)
        z = v.astype(wide)
        y = z * jax.lax.rsqrt(jnp.mean(z * z, axis=-1, keepdims=True) + eps)
        if use_scale:
            y = y * p["scale"].astype(wide)
        return {"out": y.astype(v.dtype)}

    defaults = {"scale": np.ones(kind.shape[-1])} if use_scale else {}
    return make_type({"in": kind}, {"out": kind}, fn=fn, defaults=defaults, trainable=tuple(defaults))


def rms_norm(kind: Kind, *, eps: float = 1e-6, use_scale: bool = True, scale: Any = None) -> Neuron:
    """An `rms_norm_type` neuron (port "in" → "out"; formula there) on `kind` (d,) or (L, d). `scale`: (d,) float,
    given (default ones)."""
    t = rms_norm_type(kind, eps=eps, use_scale=use_scale)
    return Neuron(t, _norm_params(t, "rms_norm", scale=scale))


# ---------------------------------------------------------------------------------------------------- activations


def _elementwise(kind: Kind, where: str, f) -> Any:
    _shaped_kind(kind, "kind", where)
    return make_type({"in": kind}, {"out": kind}, fn=lambda p, x, ctx: {"out": f(x["in"])})


@neuron_type("gelu")
def gelu_type(kind: Kind = NUMBER, approximate: bool = True):
    """GELU, elementwise on any kind: y.out = x · Φ(x) with Φ the standard normal CDF (`approximate=False`: exact,
    via erf), or, with `approximate=True` (the default, as `jax.nn.gelu`'s), its tanh form
    0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))."""
    if not isinstance(approximate, bool):
        raise ProgramError(f"neuron type 'gelu': approximate must be True or False, not {approximate!r}")
    return _elementwise(kind, "neuron type 'gelu'", lambda v: jax.nn.gelu(v, approximate=approximate))


def gelu(kind: Kind = NUMBER, *, approximate: bool = True) -> Neuron:
    """A `gelu_type` neuron (port "in" → "out"; formula there; `approximate=True`, the tanh form, by default)."""
    return Neuron(gelu_type(kind, approximate=approximate))


@neuron_type("silu")
def silu_type(kind: Kind = NUMBER):
    """SiLU (swish), elementwise on any kind: y.out = x · σ(x) = x / (1 + exp(−x))."""
    return _elementwise(kind, "neuron type 'silu'", jax.nn.silu)


def silu(kind: Kind = NUMBER) -> Neuron:
    """A `silu_type` neuron (port "in" → "out"; formula there)."""
    return Neuron(silu_type(kind))


# --------------------------------------------------------------------------------------------------- causal shift


@neuron_type("causal_shift")
def causal_shift_type(kind: Kind, fill: float = 0.0):
    """Shift a sequence one position later, for "predict the next token" alignment.

    - Sequence form (kind (L, d)): y.out[0] = fill (every entry), y.out[i] = x.in[i − 1] for 0 < i < L (the last
      row is dropped).
    - Token form (a kind of 0 or 1 dimensions): y.out = x.in, the identity: one token per cycle, the shift by one
      position is the neuron's own one-cycle delay. `fill` is unused there (what the stream holds before the first
      token is the program's initial value, zeros unless set with ``Program.add(..., initial=...)``).
    """
    where = "neuron type 'causal_shift'"
    _shaped_kind(kind, "kind", where)
    if len(kind.shape) > 2:
        raise ProgramError(f"{where}: kind must have at most 2 dimensions (L, d), not {kind!r}")
    if len(kind.shape) == 2:

        def fn(p, x, ctx):
            v = x["in"]
            return {"out": jnp.concatenate([jnp.full_like(v[:1], fill), v[:-1]], axis=0)}

    else:

        def fn(p, x, ctx):
            return {"out": x["in"]}

    return make_type({"in": kind}, {"out": kind}, fn=fn)


def causal_shift(kind: Kind, fill: float = 0.0) -> Neuron:
    """A `causal_shift_type` neuron (port "in" → "out"; formula there)."""
    return Neuron(causal_shift_type(kind, fill=fill))
