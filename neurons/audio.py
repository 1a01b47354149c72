"""The "audio" neuron of digital sound synthesis: a sine oscillator modulated by three streams."""

from __future__ import annotations

import jax.numpy as jnp

from dmm import NUMBER, Kind, make_type, neuron_type


@neuron_type("sine")
def sine(kind: Kind = NUMBER):
    """y.out = sin(x.a ⊙ x.x + x.b) elementwise, on three input streams of one kind.

    The "more powerful neuron" of the author's research agenda: with a timer on x it is an oscillator whose
    frequency (a) and phase (b) are themselves streams, so one sine can frequency- or phase-modulate another.
    """
    return make_type(
        {"a": kind, "x": kind, "b": kind},
        {"out": kind},
        fn=lambda p, x, ctx: {"out": jnp.sin(x["a"] * x["x"] + x["b"])},
    )
