"""Attention programs: associative recall through a memory neuron, and a network that repairs its own wiring by
attention over the rows of its matrix (higher-order attention)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import attention
import dmm
import neurons


MEMORIES = ("kv", "linear", "delta")


def associative_recall(
    n_pairs: int = 8,
    length: int | None = None,
    n_keys: int | None = None,
    n_values: int | None = None,
    memory: str = "kv",
    mechanism: str = "softmax",
    options: Mapping[str, Any] | tuple = (),
    scale: float = 8.0,
    feature: str = "identity",
    lr_logit: float = 10.0,
) -> dmm.Program:
    """Associative recall: key/value pairs enter one per cycle into a memory, then a query reads the answer.

    Sources `key`, `value`, `query` (one-hot vectors of the kinds of `attention.recall_kinds(n_keys, n_values)`)
    and `write` (1 while pairs arrive, 0 at the query) feed the neuron `memory`; `memory.out` (also wired to the
    sink `answer`) is the recalled value. `memory` is a `kv_memory` of capacity `length` (default `n_pairs`) with
    the attention `mechanism` and `options` and score scale `scale` (``memory="kv"``), a gated `linear_attention`
    (``"linear"``) or a gated `delta_rule` (``"delta"``, learning-rate logit `lr_logit` from a constant) with feature
    map `feature`. `recall_inputs` turns an `attention.recall_task` batch into the run's inputs.
    """
    if memory not in MEMORIES:
        raise dmm.ProgramError(f"associative_recall: memory must be one of {MEMORIES}, not {memory!r}")
    n_keys = n_pairs if n_keys is None else n_keys
    n_values = n_pairs if n_values is None else n_values
    keys, values = attention.recall_kinds(n_keys, n_values)
    p = dmm.Program()
    p.add("key", neurons.external(keys))
    p.add("value", neurons.external(values))
    p.add("query", neurons.external(keys))
    p.add("write", neurons.external())
    if memory == "kv":
        cap = n_pairs if length is None else length
        neuron = attention.kv_memory(keys, values, cap, scale=scale, gated=True, mechanism=mechanism, options=options)
    elif memory == "linear":
        neuron = attention.linear_attention(keys, values, feature=feature, gated=True)
    else:
        neuron = attention.delta_rule(keys, values, feature=feature, gated=True)
        p.add("one", neurons.const(1.0))
    attention.add_with_state(p, "memory", neuron)
    if memory == "delta":
        p.link("one.out", "memory.beta", lr_logit)
    p.add("answer", neurons.sink({"in": values}))
    for src, dst in (("key", "k"), ("value", "v"), ("query", "q"), ("write", "write")):
        p.link(f"{src}.out", f"memory.{dst}", 1.0, trainable=False)
    p.link("memory.out", "answer.in", 1.0, trainable=False)
    return p


def recall_inputs(task: attention.RecallTask, n_keys: int, n_values: int) -> tuple[dict[str, np.ndarray], int, int]:
    """Run inputs for `associative_recall` from a task batch.

    Position t of a sequence is fed at cycle t + 1 (key, value, write = 1); the query at cycle T + 1 (write = 0);
    the memory answers at cycle T + 2.

    **Returns:** `(inputs, steps, row)`: inputs {stream: float32 (B, steps, ...)}, `steps` = T + 2, and the row
    of a recorded ``memory.out`` trace (steps, n_values) that holds the answer (T + 1).
    """
    b, t = task.keys.shape
    steps = t + 2
    eye_k, eye_v = np.eye(n_keys, dtype=np.float32), np.eye(n_values, dtype=np.float32)
    key = np.zeros((b, steps, n_keys), np.float32)
    value = np.zeros((b, steps, n_values), np.float32)
    query = np.zeros((b, steps, n_keys), np.float32)
    write = np.zeros((b, steps), np.float32)
    key[:, :t] = eye_k[task.keys]
    value[:, :t] = eye_v[task.values]
    write[:, :t] = 1.0
    query[:, t] = eye_k[task.query]
    return {"key.out": key, "value.out": value, "query.out": query, "write.out": write}, steps, t + 1


def attention_rewiring(
    dim: int = 16, patterns: int = 4, flips: int = 4, beta: float = 1.0, rate: float = 0.25, seed: int = 0
) -> dmm.Program:
    """A network that repairs a damaged fan-in by higher-order attention over the rows of its own matrix.

    `dim` constant sources `x0..` feed the sink `memory`, whose input rows `memory.p0..` store `patterns` random
    ±1 patterns (their link weights); the neuron `probe` (identity) reads the sources through the row of pattern 0
    with `flips` signs flipped. The `row_attention` neuron `rewire` reads W from Self and sends
    Δξ = rate·(X softmax(β Xᵀξ) - ξ) for the probe's row ξ into Self.delta every cycle (gate = the constant
    `gate` times `rate`): a modern-Hopfield retrieval step on the wiring, so the probe's row converges to the
    stored pattern and `probe.out` to that pattern's weighted sum of the sources. Random draws use NumPy's
    generator with `seed`.
    """
    rng = np.random.default_rng(seed)
    stored = rng.choice([-1.0, 1.0], size=(patterns, dim))
    damaged = stored[0].copy()
    damaged[rng.choice(dim, size=flips, replace=False)] *= -1.0
    values = rng.normal(size=dim)
    p = dmm.Program()
    neurons.add_self(p)
    for i in range(dim):
        p.add(f"x{i}", neurons.const(float(values[i])))
    p.add("memory", neurons.sink([f"p{k}" for k in range(patterns)]))
    p.add("probe", neurons.identity())
    p.add("gate", neurons.const(1.0))
    p.add(
        "rewire",
        attention.row_attention("number", ("probe.in",), tuple(f"memory.p{k}" for k in range(patterns)), beta=beta),
    )
    for i in range(dim):
        for k in range(patterns):
            p.link(f"x{i}.out", f"memory.p{k}", float(stored[k, i]))
        p.link(f"x{i}.out", "probe.in", float(damaged[i]))
    p.link("gate.out", "rewire.gate", rate)
    p.link("self.out", "rewire.net", 1.0, trainable=False)
    p.link("rewire.delta", "self.delta", 1.0, trainable=False)
    return p
