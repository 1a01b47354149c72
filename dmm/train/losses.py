"""Classification losses for training token models: masked cross-entropy and accuracy, on arrays and on traces.

    cross_entropy(logits, labels, mask) = Σ_n m_n · (logsumexp(logits_n) − logits_n[labels_n]) / Σ_n m_n
    accuracy(logits, labels, mask)      = Σ_n m_n · [argmax(logits_n) = labels_n] / Σ_n m_n

over the positions n (every index of `labels`), with weights m_n = the mask (default: labels ≥ 0, so the −100
labels of `attention.mqar` and the ignore-index convention count for nothing). A mask with no positions (Σ m = 0)
gives 0, not NaN, and gradients stay finite: masked positions take label 0 inside the formula and their terms
are selected away. The log-softmax is max-shifted (stable for logits of any size) and computed in at least
float32. Pure JAX: use them in a `dmm.train.Trainer` loss, under `jax.grad`, `jax.jit` and `jax.vmap`.

`trace_cross_entropy` and `trace_accuracy` read the logits from a stream of a `dmm.Trace` (or a `dmm.BatchTrace`)
at given rows, so that the caller, who knows the program's latency, says which cycles carry the predictions; with
``first=`` (the cycle at which the stream first carries the input, e.g. `dmm.first_cycle`) they refuse rows that
read earlier cycles.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import numpy as np

from dmm import BatchTrace, ProgramError, Trace, check_cycles


def _weights(labels: jax.Array, mask: Any, dtype: Any) -> jax.Array:
    """The mask as weights of `dtype`, shaped like `labels` (default: labels ≥ 0)."""
    if mask is None:
        return (labels >= 0).astype(dtype)
    mask = jnp.asarray(mask)
    if mask.shape != labels.shape:
        raise ProgramError(f"losses: mask of shape {mask.shape} does not match labels of shape {labels.shape}")
    return mask.astype(dtype)


def _check(logits: Any, labels: Any, where: str) -> tuple[jax.Array, jax.Array]:
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise ProgramError(f"{where}: logits must be floating, not {logits.dtype}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ProgramError(f"{where}: labels must be integers, not {labels.dtype}")
    if logits.ndim < 1 or logits.shape[:-1] != labels.shape:
        raise ProgramError(
            f"{where}: logits of shape {logits.shape} need labels of shape {logits.shape[:-1]} (logits (..., V), "
            f"labels (...)), not {labels.shape}"
        )
    return logits, labels


def _wide(dtype: Any) -> Any:
    return jnp.float32 if jnp.finfo(dtype).bits < 32 else dtype


def _masked_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    """Σ w·v / Σ w, and 0 when Σ w = 0 (finite gradients either way)."""
    total = jnp.sum(weights)
    some = total > 0
    num = jnp.sum(jnp.where(weights != 0, values * weights, jnp.zeros_like(values)))
    return jnp.where(some, num / jnp.where(some, total, jnp.ones_like(total)), jnp.zeros_like(total))


def per_position_cross_entropy(logits: Any, labels: Any, mask: Any = None) -> jax.Array:
    """The cross-entropy at every position, −log softmax(logits)[label], 0 where the mask is 0.

    **Arguments:** `logits` (..., V) floating; `labels` (...) integer; `mask` (...) bool or float, default
    ``labels >= 0``. **Returns:** (...) in the logits' dtype (at least float32). An unmasked label outside
    [0, V) gives NaN (a visible error, caught by the Trainer's guard)."""
    logits, labels = _check(logits, labels, "per_position_cross_entropy")
    dtype = _wide(logits.dtype)
    weights = _weights(labels, mask, dtype)
    return _per_position(logits.astype(dtype), labels, weights)


def _per_position(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> jax.Array:
    on = weights != 0
    safe = jnp.where(on, labels, jnp.zeros_like(labels))
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, safe[..., None], axis=-1, mode="fill", fill_value=jnp.nan)[..., 0]
    return jnp.where(on, -picked, jnp.zeros_like(picked))


def cross_entropy(logits: Any, labels: Any, mask: Any = None) -> jax.Array:
    """Mean cross-entropy over the masked positions (the module docstring gives the formula).

    **Arguments:**

    - `logits`: (..., V) floating, unnormalised log-probabilities.
    - `labels`: (...) integer, the target class of every position.
    - `mask`: (...) bool or float weights; default ``labels >= 0`` (−100 labels are ignored).

    **Returns:** a scalar in the logits' dtype (at least float32); 0 when the mask has no positions. An unmasked
    label outside [0, V) makes it NaN. Shape or dtype mistakes raise `dmm.ProgramError`.
    """
    logits, labels = _check(logits, labels, "cross_entropy")
    dtype = _wide(logits.dtype)
    weights = _weights(labels, mask, dtype)
    return _masked_mean(_per_position(logits.astype(dtype), labels, weights), weights)


def accuracy(logits: Any, labels: Any, mask: Any = None) -> jax.Array:
    """The (weighted) fraction of masked positions whose highest logit is the label (ties: the first index).

    **Arguments:** as `cross_entropy`. **Returns:** a scalar in [0, 1] in the logits' dtype (at least float32); 0
    when the mask has no positions. It has zero gradient everywhere (train on `cross_entropy`)."""
    logits, labels = _check(logits, labels, "accuracy")
    dtype = _wide(logits.dtype)
    weights = _weights(labels, mask, dtype)
    hit = (jnp.argmax(logits, axis=-1).astype(labels.dtype) == labels).astype(dtype)
    return _masked_mean(jax.lax.stop_gradient(hit), weights)


def _start(trace: Trace | BatchTrace) -> int | None:
    """The cycles done before the trace's first row (the earliest over a batch), or None when traced."""
    try:
        first = np.asarray(trace.first_cycle)
    except Exception:  # traced under a JAX transformation
        return None
    return int(first.min()) if first.size else None


def trace_logits(trace: Trace | BatchTrace, stream: str, rows: Any, *, first: int | None = None) -> jax.Array:
    """The values of `stream` at `rows` of `trace`.

    **Arguments:**

    - `trace`: a `dmm.Trace` (stream arrays (steps, *shape)) or a `dmm.BatchTrace` ((B, steps, *shape)).
    - `stream`: the stream holding the logits, of a kind (..., V).
    - `rows`: which rows (row r holds cycle trace.first_cycle + 1 + r): an int (one row, the row axis dropped), a
      slice or an integer index array (rows gathered in that order).
    - `first`: optional, the first cycle at which `stream` carries the input (e.g. ``dmm.first_cycle(program,
      stream)``): rows reading an earlier cycle raise `dmm.ProgramError` ("the loss reads row 3 (cycle 4) of
      'readout.out', which first carries the input at cycle 5"). The check is static: it is made when `rows` and
      the trace's `first_cycle` are concrete, and skipped when either is traced (under `jax.jit`, `jax.grad` or
      `jax.vmap` a run's `first_cycle` is traced; check once outside, e.g. with `dmm.check_rows`).

    **Returns:** ``trace[stream][rows]`` (``[:, rows]`` for a BatchTrace).
    """
    values = jnp.asarray(trace[stream])
    axis = 1 if isinstance(trace, BatchTrace) else 0
    index = rows if isinstance(rows, (int, slice)) else jnp.asarray(rows)
    if not isinstance(index, (int, slice)) and not jnp.issubdtype(index.dtype, jnp.integer):
        raise ProgramError(f"trace_logits: rows must be an int, a slice or integer indices, not {index.dtype}")
    if first is not None:
        if isinstance(first, bool) or not isinstance(first, (int, np.integer)):
            raise ProgramError(f"trace_logits: first must be an int cycle (e.g. dmm.first_cycle), not {first!r}")
        start = _start(trace)
        if start is not None and values.ndim > axis:
            check_cycles(stream, rows, int(first), steps=values.shape[axis], start=start)
    return values[(slice(None),) * axis + (index,)]


def trace_cross_entropy(
    trace: Trace | BatchTrace, stream: str, labels: Any, *, rows: Any, mask: Any = None, first: int | None = None
) -> jax.Array:
    """`cross_entropy` of the logits ``trace_logits(trace, stream, rows, first=first)`` against `labels`, whose
    shape is theirs without the last axis (with a leading B for a BatchTrace); `mask` as in `cross_entropy`. `rows`
    is required: the caller knows at which cycles the program's predictions arrive (see `trace_logits`, whose
    `first` refuses rows read too early)."""
    return cross_entropy(trace_logits(trace, stream, rows, first=first), labels, mask)


def trace_accuracy(
    trace: Trace | BatchTrace, stream: str, labels: Any, *, rows: Any, mask: Any = None, first: int | None = None
) -> jax.Array:
    """`accuracy` of the logits ``trace_logits(trace, stream, rows, first=first)`` against `labels` (see
    `trace_cross_entropy`)."""
    return accuracy(trace_logits(trace, stream, rows, first=first), labels, mask)
