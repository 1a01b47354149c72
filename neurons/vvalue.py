"""Neurons of the one-kind "V-value" machine used by the author's DMM-Lite training runs.

In DMM-Lite every stream is one flat dictionary ``{key: number}``: a character count is ``{"t": 2, "e": 1}`` and a
scalar is ``{":number": x}``. Here that is ONE keyed kind (`vkind`): one coordinate per character plus a
``":number"`` coordinate where scalars live. Because every port has the same kind, any output may be linked to any
input, so a link can add a count vector to a scalar; neurons that produce numbers write them into the ``":number"``
slot and neurons that read numbers read that slot. The accumulator, constants and sinks of `neurons.basic` work on
this kind unchanged; this module adds the types whose input or output is a number.

With e = the one-hot vector of ``":number"`` and x[n] = x[":number"]:

| type | ports | formula |
|---|---|---|
| `v_timer` | in → out | out = in + e |
| `v_text_input` | timer → out | out = onehot(text[min(⌊t/every⌋, len − 1)]) if t mod every = 0 else 0, t = timer[n] |
| `v_norm` | in → out | out = max_k abs(in[k]) · e (over every coordinate, ``":number"`` included) |
| `v_dot` | x, y → out | out = clip(Σ_k x[k]·y[k]) · e (optional clip to [−c, c]; off by default) |
| `v_compare` | x, y → true, false | true = relu(x[n] − y[n]) · e, false = relu(y[n] − x[n]) · e |
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dmm import Kind, ProgramError, make_type, neuron_type

NUMBER_KEY = ":number"


def vkind(text: str = "test string.", name: str = "v") -> Kind:
    """The V-value kind: one coordinate per distinct character of `text` (in order of first appearance), then
    ``":number"``."""
    chars = tuple(dict.fromkeys(text))
    if NUMBER_KEY in chars:
        raise ProgramError("vkind: the text may not contain the reserved key ':number'")
    return Kind.keyed(name, chars + (NUMBER_KEY,))


def _number_index(kind: Kind, where: str) -> int:
    if kind.keys is None or (NUMBER_KEY,) not in kind.keys:
        raise ProgramError(f"{where}: kind {kind.name!r} needs a key table with a {NUMBER_KEY!r} coordinate (see vkind)")
    return kind.index(NUMBER_KEY)


def _number(kind: Kind, value: jax.Array, n: int) -> jax.Array:
    return jnp.zeros(kind.shape, value.dtype).at[n].set(value)


@neuron_type("v_timer")
def v_timer(kind: Kind):
    """out = in + e_":number". With a weight-1 self-link and Y_0 = 0 its ":number" slot is c at cycle c."""
    n = _number_index(kind, "v_timer")
    e = np.zeros(kind.shape)
    e[n] = 1.0
    return make_type({"in": kind}, {"out": kind}, fn=lambda p, x, ctx: {"out": x["in"] + jnp.asarray(e, x["in"].dtype)})


@neuron_type("v_text_input")
def v_text_input(kind: Kind, text: str = "test string.", every: int = 10):
    """Reads `text` one character every `every` cycles, clamped to the last character after the end; with
    t = timer[":number"]: out = onehot(text[min(⌊t / every⌋, len(text) − 1)]) if t mod every = 0, else 0. No gradient
    flows through it."""
    n = _number_index(kind, "v_text_input")
    if not text or every < 1:
        raise ProgramError("v_text_input needs a non-empty text and every >= 1")
    missing = sorted({c for c in text if (c,) not in kind.keys})
    if missing:
        raise ProgramError(f"v_text_input: kind {kind.name!r} has no labels for characters {missing}")
    table = np.stack([kind.onehot(c) for c in text])

    def fn(p, x, ctx):
        t = jax.lax.stop_gradient(x["timer"][n])
        i = jnp.clip(jnp.floor(t / every), 0, len(text) - 1).astype(jnp.int32)
        on = jnp.mod(t, every) == 0
        return {"out": jnp.where(on, jnp.asarray(table, x["timer"].dtype)[i], 0.0)}

    return make_type({"timer": kind}, {"out": kind}, fn=fn)


@neuron_type("v_norm")
def v_norm(kind: Kind):
    """out = max_k abs(in[k]) · e_":number" (the max-norm over every coordinate, written as a number)."""
    n = _number_index(kind, "v_norm")
    return make_type({"in": kind}, {"out": kind}, fn=lambda p, x, ctx: {"out": _number(kind, jnp.max(jnp.abs(x["in"])), n)})


@neuron_type("v_dot")
def v_dot(kind: Kind, clip: float | None = None):
    """out = Σ_k x[k]·y[k] · e_":number" over every coordinate. Unclipped by default; `clip=c` limits the sum to
    [−c, c] (the author's DMM-Lite "governor" used c = 4)."""
    n = _number_index(kind, "v_dot")
    if clip is not None and not clip > 0:
        raise ProgramError(f"v_dot: clip must be positive, not {clip}")

    def fn(p, x, ctx):
        d = jnp.sum(x["x"] * x["y"])
        return {"out": _number(kind, d if clip is None else jnp.clip(d, -clip, clip), n)}

    return make_type({"x": kind, "y": kind}, {"out": kind}, fn=fn)


@neuron_type("v_compare")
def v_compare(kind: Kind):
    """true = relu(x[":number"] − y[":number"]) · e_":number", false = relu(y[":number"] − x[":number"]) · e_":number"
    (other coordinates of the inputs are ignored)."""
    n = _number_index(kind, "v_compare")

    def fn(p, x, ctx):
        a, b = x["x"][n], x["y"][n]
        return {"true": _number(kind, jax.nn.relu(a - b), n), "false": _number(kind, jax.nn.relu(b - a), n)}

    return make_type({"x": kind, "y": kind}, {"true": kind, "false": kind}, fn=fn)
