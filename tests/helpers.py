"""Small programs and utilities the tests share."""

from __future__ import annotations

import dmm
import neurons


def counter(source: str = "one", name: str = "cnt", keep: float = 1.0) -> dmm.Program:
    """An accumulator `name` fed by `source` (``"one"``: a constant 1; ``"src"``: an external input):
    ``name.out`` ← keep · ``name.out`` + ``source.out`` (so with ``"one"`` and keep = 1 it counts 0, 1, 2, ...)."""
    p = dmm.Program()
    p.add(source, neurons.const(1.0) if source == "one" else neurons.external())
    p.add(name, neurons.accumulator())
    p.link(f"{name}.out", f"{name}.accum", keep)
    p.link(f"{source}.out", f"{name}.delta", 1.0)
    return p
