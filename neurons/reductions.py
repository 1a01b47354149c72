"""Neurons that reduce streams to numbers: max-norm, dot, compare."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dmm import NUMBER, Kind, ProgramError, make_type, neuron_type


@neuron_type("max_norm")
def max_norm(kind: Kind = NUMBER):
    """y.out = max_k |x.in[k]| (number kind); 0 for a zero value."""
    return make_type({"in": kind}, {"out": NUMBER}, fn=lambda p, x, ctx: {"out": jnp.max(jnp.abs(x["in"]))})


@neuron_type("dot")
def dot(kind: Kind = NUMBER, clip: float | None = None):
    """y.out = Σ_k x.x[k]·x.y[k] (number kind). Unclipped by default; `clip=c` limits it to [-c, c] (the "governor"
    of the author's Julia engine, which used c = 4)."""
    if clip is not None and not clip > 0:
        raise ProgramError(f"dot: clip must be positive, not {clip}")

    def fn(p, x, ctx):
        d = jnp.sum(x["x"] * x["y"])
        return {"out": d if clip is None else jnp.clip(d, -clip, clip)}

    return make_type({"x": kind, "y": kind}, {"out": NUMBER}, fn=fn)


@neuron_type("compare")
def compare():
    """(y.true, y.false) = (relu(x.x - x.y), relu(x.y - x.x)) on numbers."""
    return make_type(
        {"x": NUMBER, "y": NUMBER},
        {"true": NUMBER, "false": NUMBER},
        fn=lambda p, x, ctx: {"true": jax.nn.relu(x["x"] - x["y"]), "false": jax.nn.relu(x["y"] - x["x"])},
    )
