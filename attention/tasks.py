"""Associative-recall data (Schlag, Irie & Schmidhuber 2021, synthetic task; `training-and-attention.md` C.1).

A sequence presents key/value pairs, one per position, then a query key; the target is the value stored under it.

- Setting 1 (capacity): N pairs, keys drawn without replacement, one query among them.
- Setting 2 (updates): 2N pairs, keys drawn with replacement; the target is the value of the key's *last*
  occurrence (a memory must overwrite, not add).

Keys are named by lowercase and values by uppercase base-26 names (a, b, …, z, ba, bb, …); values are drawn
uniformly with replacement.

`mqar` draws multi-query associative recall (Arora, Eyuboglu et al., "Zoology", ICLR 2024, arXiv 2312.04927) as
token sequences for a language model, in pure JAX (jittable, so a training loop can draw fresh batches inside jit).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
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


def mqar(key: jax.Array, batch: int, *, vocab: int, length: int, pairs: int, alpha: float = 0.01) -> tuple[jax.Array, jax.Array]:
    """Draw `batch` multi-query associative-recall sequences (Zoology's MQAR; pure JAX, deterministic per `key`).

    With V = `vocab`, L = `length`, D = `pairs`: keys are drawn without replacement from [1, V/2) and values without
    replacement from [V/2, V) (V/2 rounded down). Positions 0 … 2D − 1 hold the D pairs, key then value. The rest of
    the sequence has S = ⌊(L − 2D)/2⌋ query slots at the even offsets 2D + 2j, j = 0 … S − 1; D distinct slots are
    drawn without replacement with weights p(j) ∝ (j + 1)^(α − 1) (Plackett–Luce, i.e. NumPy's
    ``choice(replace=False, p=...)``, as Zoology does), and the keys are put at them in random order, so every key
    is queried exactly once. The query's gap g = j + 1 (in slots of two tokens after the pairs) thus has
    p(g) ∝ g^(α − 1): a strong bias toward early queries for small α. Every other position of the query part is a uniform random token from [0, V) (which
    may by chance equal a key or value; those positions are not labelled). The label at a query position is the
    value stored under that key (the token to predict next, at the query position itself); every other label is
    −100.

    **Arguments:** `key` a JAX PRNG key; `batch` B (a static Python int); `vocab` V > L; `length` L ≥ 4D;
    `pairs` D ≥ 1; `alpha` α > 0 the power-law exponent (1: uniform slots; Zoology's default 0.01).
    **Returns:** `(tokens, labels)`, int32 arrays of shape (B, L); `labels` is −100 except at the D query
    positions of each row.
    **Raises:** `ProgramError` if the sizes break V > L, 4D ≤ L, D ≥ 1, B ≥ 1, or α ≤ 0.
    """
    for name, v in (("batch", batch), ("vocab", vocab), ("length", length), ("pairs", pairs)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise ProgramError(f"mqar: {name} must be a Python int, not {v!r}")
    if batch < 1 or pairs < 1:
        raise ProgramError(f"mqar: batch and pairs must be ≥ 1, not batch={batch}, pairs={pairs}")
    if not vocab > length:
        raise ProgramError(f"mqar: vocab must exceed length (V > L), not vocab={vocab}, length={length}")
    if not 4 * pairs <= length:
        raise ProgramError(f"mqar: needs 4·pairs ≤ length (room for the pairs and their queries), "
                           f"not pairs={pairs}, length={length}")
    if not float(alpha) > 0:
        raise ProgramError(f"mqar: alpha must be > 0, not {alpha!r}")
    half = vocab // 2
    slots = (length - 2 * pairs) // 2
    logp = (float(alpha) - 1.0) * jnp.log(jnp.arange(1, slots + 1, dtype=jnp.float32))

    def one(k: jax.Array) -> tuple[jax.Array, jax.Array]:
        kk, kv, kg, kf = jax.random.split(k, 4)
        keys = 1 + jax.random.choice(kk, half - 1, (pairs,), replace=False)
        values = half + jax.random.choice(kv, vocab - half, (pairs,), replace=False)
        # Gumbel top-k: D distinct slots drawn sequentially with weights p (the first top-k index is the first draw)
        gumbel = jax.random.gumbel(kg, (slots,), jnp.float32) + logp
        pos = 2 * pairs + 2 * jax.lax.top_k(gumbel, pairs)[1]
        tokens = jax.random.randint(kf, (length,), 0, vocab, jnp.int32)
        context = jnp.stack([keys, values], axis=1).reshape(-1).astype(jnp.int32)
        tokens = tokens.at[: 2 * pairs].set(context).at[pos].set(keys.astype(jnp.int32))
        labels = jnp.full((length,), -100, jnp.int32).at[pos].set(values.astype(jnp.int32))
        return tokens, labels

    return jax.vmap(one)(jax.random.split(key, batch))
