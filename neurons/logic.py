"""Comparison of whole values: less-or-equal with a true and a false channel."""

from __future__ import annotations

import jax.numpy as jnp

from dmm import NUMBER, Kind, make_type, neuron_type


@neuron_type("less_or_equal")
def less_or_equal(kind: Kind = NUMBER):
    """(y.true, y.false) = (1, 0) if every coordinate of x.right − x.left is ≥ 0, else (0, 1) (number kind).

    The flat form of the V-value ≤ (`dmm.vvalues.less_or_equal`): 2 ≤ 1 is false, 1 ≤ 2 and 1 ≤ 1 are true. A step
    function: its gradient is zero.
    """

    def fn(p, x, ctx):
        t = jnp.all(x["right"] - x["left"] >= 0).astype(x["left"].dtype)
        return {"true": t, "false": 1.0 - t}

    return make_type({"left": kind, "right": kind}, {"true": NUMBER, "false": NUMBER}, fn=fn)
