"""The student of the detector synthesis: a 1,486-link DMM that learns to imitate the handcrafted detector.

This is the program side of the author's "feedforward-run-3" (`training-and-attention.md` A.2–A.6), rebuilt on
`dmm`:

- **Student** (`synthesis_network`): sources `timer`, `input` (reads the text), `const_1`, `eos`; 5 layers × 2
  copies × {accum, norm, dot, compare} interneurons; an `output` sink with inputs dict-1, dict-2. As in the
  author's V-value engine every stream is ONE keyed kind (`neurons.vkind`: the characters plus ``":number"``), so
  any output may feed any input.
- **Links.** The outputs of the first layer are input.out, eos.out, const_1.out (3 ports); each interneuron layer
  has 2 × 5 outputs (accum.out, norm.out, dot.out, compare.true, compare.false) and 2 × 6 inputs (accum.delta,
  norm.in, dot.x, dot.y, compare.x, compare.y; an accumulator's first input, accum.accum, is NOT linked: it keeps its
  fixed weight-1 self-loop). Every output is linked to every input of a later layer, the output sink's 2 inputs
  being the last layer:

      interneuron layer L (L = 1..5) receives 3 + 10·(L − 1) outputs on each of its 12 inputs:
          12 · Σ_{L=1..5} (3 + 10·(L − 1)) = 12 · (15 + 100) = 1,380
      output sink: 2 inputs × (3 + 5·10) outputs                =   106
      soft (trainable) links                                      1,486

  plus 12 hard links (timer → timer, timer → input.timer, and the 10 accumulator self-loops) = 1,498 in all, the
  count the author printed (`count(trainable["network_matrix"]) = 1486` and 12 entries in `fixed_matrix`).
- **Teacher and loss** (`teacher_targets`, `output_residuals`, `output_loss`): the teacher is
  `programs.duplicate_detector` on the same text (its targets are computed once); loss = Σ_{c=1..140} Σ_{k=1,2}
  (student output.dict-k(c)[":number"] − teacher output.dict-k(c))². The dot neurons are clipped to ±4 as in the
  author's engine (`clip=None` turns it off).

The experiment (the author's training setup, dense training of several seeds, automated sparsification, the
generalization table) is a script outside the installed packages: ``python experiments/synthesis.py --out DIR``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import dmm
import neurons

from .detector import duplicate_detector

TEXT = "test string."
CYCLES = 140
OUTPUTS = ("output.dict-1", "output.dict-2")
INPUTS_T = (("accum", "delta"), ("norm", "in"), ("dot", "x"), ("dot", "y"), ("compare", "x"), ("compare", "y"))
OUTPUTS_T = (("accum", "out"), ("norm", "out"), ("dot", "out"), ("compare", "true"), ("compare", "false"))


def soft_links(layers: int = 5, copies: int = 2) -> list[tuple[str, str]]:
    """The (source output, target input) pairs of the trainable links, layer by layer (see the module docstring)."""
    outs = {1: ["input.out", "eos.out", "const_1.out"]}
    ins = {}
    for layer in range(1, layers + 1):
        outs[layer + 1] = [f"{n}-{layer}-{k}.{q}" for k in range(1, copies + 1) for n, q in OUTPUTS_T]
        ins[layer] = [f"{n}-{layer}-{k}.{q}" for k in range(1, copies + 1) for n, q in INPUTS_T]
    ins[layers + 1] = list(OUTPUTS)
    return [(s, d) for layer in range(1, layers + 2) for d in ins[layer] for o in range(1, layer + 1) for s in outs[o]]


def synthesis_network(
    text: str = TEXT, seed: int = 123, scale: float = 0.01, clip: float | None = 4.0, layers: int = 5, copies: int = 2,
    charset: str = "",
) -> dmm.Program:
    """The trainable 1,486-link student of the detector synthesis (5 layers × 2 copies × {accum, norm, dot,
    compare}, all skip links, soft weights scale·N(0, 1) drawn from `seed`).

    `text`: the input string; the V-value kind covers the characters of text + "." + `charset`; `clip`: the dot
    neurons' clip (None: unclipped). The weights depend only on (seed, scale, layers, copies), not on the text.
    """
    for name, value in (("layers", layers), ("copies", copies)):
        if value < 1:
            raise dmm.ProgramError(f"synthesis_network: {name} must be at least 1, not {value}")
    V = neurons.vkind(text + "." + charset)
    p = dmm.Program()
    p.add("timer", neurons.v_timer(V))
    p.add("input", neurons.v_text_input(V, text, 10))
    p.add("const_1", neurons.const(V.onehot(":number"), V))
    p.add("eos", neurons.const(V.onehot("."), V))
    p.add("output", neurons.sink({"dict-1": V, "dict-2": V}))
    for layer in range(1, layers + 1):
        for k in range(1, copies + 1):
            p.add(f"accum-{layer}-{k}", neurons.accumulator(V))
            p.add(f"norm-{layer}-{k}", neurons.v_norm(V))
            p.add(f"dot-{layer}-{k}", neurons.v_dot(V, clip))
            p.add(f"compare-{layer}-{k}", neurons.v_compare(V))
    p.link("timer.out", "timer.in", 1.0, trainable=False)
    p.link("timer.out", "input.timer", 1.0, trainable=False)
    for layer in range(1, layers + 1):
        for k in range(1, copies + 1):
            p.link(f"accum-{layer}-{k}.out", f"accum-{layer}-{k}.accum", 1.0, trainable=False)
    pairs = soft_links(layers, copies)
    weights = scale * np.asarray(jax.random.normal(jax.random.key(seed), (len(pairs),), jnp.float32), np.float64)
    for (src, dst), w in zip(pairs, weights):
        p.link(src, dst, float(w))
    return p


def teacher_targets(text: str = TEXT, cycles: int = CYCLES) -> np.ndarray:
    """The handcrafted detector's outputs on `text`: float32 array (cycles, 2) of output.dict-1, output.dict-2 at
    cycles 1..cycles (its inputs X_c, as the author's loss reads them)."""
    tr = dmm.compile(duplicate_detector(text)).run(cycles, record=list(OUTPUTS))
    return np.stack([tr[s] for s in OUTPUTS], axis=1).astype(np.float32)


def output_residuals(machine: dmm.Machine):
    """The student's errors: ``residuals(trace, targets)`` = y_k(c)[":number"] − t_k(c) for every cycle c of the
    trace and k = dict-1, dict-2, flattened (targets (cycles, 2), cut to the trace length)."""
    n = machine.kind(OUTPUTS[0]).index(":number")

    def residuals(trace: dmm.Trace, targets: jax.Array) -> jax.Array:
        y = jnp.stack([trace[s][:, n] for s in OUTPUTS], axis=1)
        return jnp.ravel(y - targets[: y.shape[0]])

    return residuals


def output_loss(machine: dmm.Machine):
    """The imitation loss of a student machine: ``loss(trace, targets) = Σ_c Σ_k (y_k(c)[":number"] − t_k(c))²``
    over the trace's cycles, the sum of squares of `output_residuals`."""
    residuals = output_residuals(machine)
    return lambda trace, targets: jnp.sum(residuals(trace, targets) ** 2)
