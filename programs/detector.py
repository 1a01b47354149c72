"""The handcrafted duplicate-character detector (arXiv 1606.09470 §3; `docs/semantics.md` §6.1)."""

from __future__ import annotations

import dmm
import neurons



DETECTOR_LINKS = (
    ("timer.out", "timer.in"),
    ("timer.out", "input.timer"),
    ("accum.out", "accum.accum"),
    ("input.out", "accum.delta"),
    ("accum.out", "norm.in"),
    ("norm.out", "compare.x"),
    ("const_1.out", "compare.y"),
    ("accum.out", "dot.y"),
    ("eos.out", "dot.x"),
    ("compare.true", "output.dict-1"),
    ("dot.out", "output.dict-2"),
)


def duplicate_detector(text: str = "test string.", every: int = 10, clip: float | None = None) -> dmm.Program:
    """Handcrafted 11-link duplicate-character detector: output.dict-1 = extra copies of the most repeated
    character, output.dict-2 = number of '.' seen.

    One character of `text` enters every `every` cycles into an accumulator of character counts; max-norm and
    compare against 1 give relu(max count - 1), a dot product with e_'.' counts the dots. All outputs start at zero.
    On "test string." dict-1 first reaches 1, 2, 3 at cycles 35, 65, 145 and dict-2 reaches 1, 2, 3, 4 at
    cycles 114, 124, 134, 144. `clip` limits the dot neuron (the author's Julia engine used 4).
    """
    chars = neurons.chars_kind(text + ".")
    p = dmm.Program()
    p.add("timer", neurons.timer())
    p.add("input", neurons.text_input(text, every, chars))
    p.add("accum", neurons.accumulator(chars))
    p.add("norm", neurons.max_norm(chars))
    p.add("const_1", neurons.const(1.0))
    p.add("compare", neurons.compare())
    p.add("eos", neurons.const(chars.onehot("."), chars))
    p.add("dot", neurons.dot(chars, clip))
    p.add("output", neurons.sink(["dict-1", "dict-2"]))
    for src, dst in DETECTOR_LINKS:
        p.link(src, dst, 1.0)
    return p
