"""Associative-recall data (Schlag, Irie & Schmidhuber 2021, synthetic task; `training-and-attention.md` C.1).

A sequence presents key/value pairs, one per position, then a query key; the target is the value stored under it.

- Setting 1 (capacity): N pairs, keys drawn without replacement, one query among them.
- Setting 2 (updates): 2N pairs, keys drawn with replacement; the target is the value of the key's *last*
  occurrence (a memory must overwrite, not add).

Keys are named by lowercase and values by uppercase base-26 names (a, b, …, z, ba, bb, …); values are drawn
uniformly with replacement.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from dmm import Kind, ProgramError


def base26(i: int, upper: bool = False) -> str:
    """The base-26 name of i ≥ 0: 0 -> 'a', 25 -> 'z', 26 -> 'ba' (uppercase if `upper`)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if upper else "abcdefghijklmnopqrstuvwxyz"
    out = alphabet[i % 26]
    while i >= 26:
        i //= 26
        out = alphabet[i % 26] + out
    return out


def recall_kinds(n_keys: int, n_values: int) -> tuple[Kind, Kind]:
    """The keyed kinds ("keys", lowercase names) and ("values", uppercase names) of the task."""
    return (Kind.keyed("keys", [base26(i) for i in range(n_keys)]),
            Kind.keyed("values", [base26(i, upper=True) for i in range(n_values)]))


class RecallTask(NamedTuple):
    """A batch of associative-recall sequences (int32 NumPy arrays): `keys`, `values` (B, T) per position,
    `query`, `target` (B,)."""

    keys: np.ndarray
    values: np.ndarray
    query: np.ndarray
    target: np.ndarray


def recall_task(
    key: jax.Array | int, batch: int, n_pairs: int, *, n_keys: int | None = None, n_values: int | None = None, setting: int = 1
) -> RecallTask:
    """Draw `batch` recall sequences (with NumPy, seeded from `key`: same key, same task).

    **Arguments:** `key` a JAX PRNG key or an int seed; `n_pairs` N; `n_keys`, `n_values` the vocabulary sizes
    (default N; setting 1 needs n_keys ≥ N); `setting` 1 (T = N positions, distinct keys) or 2 (T = 2N, keys with
    replacement, target = value at the last occurrence of the query key).
    **Returns:** a `RecallTask`.
    """
    n_keys = n_pairs if n_keys is None else n_keys
    n_values = n_pairs if n_values is None else n_values
    if setting not in (1, 2):
        raise ProgramError(f"recall_task: setting must be 1 or 2, not {setting!r}")
    if setting == 1 and n_keys < n_pairs:
        raise ProgramError(f"recall_task: setting 1 draws {n_pairs} distinct keys from only {n_keys}")
    seed = key if isinstance(key, int) else np.asarray(jax.random.key_data(key)).ravel().tolist()
    rng = np.random.default_rng(seed)
    length = n_pairs if setting == 1 else 2 * n_pairs
    if setting == 1:
        keys = np.argsort(rng.random((batch, n_keys)), axis=1)[:, :n_pairs]  # without replacement
    else:
        keys = rng.integers(0, n_keys, (batch, length))
    values = rng.integers(0, n_values, (batch, length))
    rows = np.arange(batch)
    query = keys[rows, rng.integers(0, length, batch)]
    last = length - 1 - np.argmax((keys == query[:, None])[:, ::-1], axis=1)
    target = values[rows, last]
    return RecallTask(*(np.asarray(a, np.int32) for a in (keys, values, query, target)))
