"""The softmax mechanism: the max-subtracted softmax (`softmax_weights`), with its exact gradient."""

from __future__ import annotations

import dataclasses

import jax

from .base import Mechanism, register_mechanism, softmax_weights

Array = jax.Array


@register_mechanism("softmax")
@dataclasses.dataclass(frozen=True)
class Softmax(Mechanism):
    """w = softmax(u) over the last axis, max-subtracted (`softmax_weights`). No options."""

    def weights(self, logits: Array, mask: Array | None = None, key: Array | None = None) -> Array:
        """softmax(logits) over the last axis; `logits` (..., n) float, `mask` (..., n) bool or None, `key` unused.
        Returns (..., n)."""
        return softmax_weights(logits, mask)
