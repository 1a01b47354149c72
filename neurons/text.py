"""Text input: one character every few cycles, as a one-hot vector of a keyed `chars` kind."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dmm import NUMBER, Kind, ProgramError, make_type, neuron_type


def chars_kind(text: str, name: str = "chars") -> Kind:
    """The keyed kind with one coordinate per distinct character of `text`, in order of first appearance."""
    return Kind.keyed(name, dict.fromkeys(text))


@neuron_type("text_input")
def text_input(text: str = "test string.", every: int = 10, kind: Kind | None = None):
    """Reads `text` one character every `every` cycles, clamped to the last character after the end.

    With t = x.timer: y.out = onehot(text[min(⌊t / every⌋, len(text) - 1)]) if t mod every = 0, else 0.
    No gradient flows through it. `kind` defaults to `chars_kind(text)`.
    """
    if not text or every < 1:
        raise ProgramError("text_input needs a non-empty text and every >= 1")
    kind = chars_kind(text) if kind is None else kind
    missing = sorted({c for c in text if (c,) not in (kind.keys or ())})
    if missing:
        raise ProgramError(f"text_input: kind {kind.name!r} has no labels for characters {missing}")
    table = np.stack([kind.onehot(c) for c in text])

    def fn(p, x, ctx):
        t = jax.lax.stop_gradient(x["timer"])
        i = jnp.clip(jnp.floor(t / every), 0, len(text) - 1).astype(jnp.int32)
        on = jnp.mod(t, every) == 0
        return {"out": jnp.where(on, jnp.asarray(table, x["timer"].dtype)[i], 0.0)}

    return make_type({"timer": NUMBER}, {"out": kind}, fn=fn)
