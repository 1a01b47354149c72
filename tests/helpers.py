"""Small programs and utilities the tests share."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import dmm
import neurons

ROOT = Path(__file__).resolve().parent.parent
"""The repository's root folder."""


def dmm_cmd(capsys, *argv) -> tuple[int, str, str]:
    """Run ``dmm ARGV`` in-process: (exit status, stdout, stderr)."""
    from dmm import cli

    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def load_script(path: str, name: str) -> ModuleType:
    """Import a script outside the installed packages (``experiments/...``, ``benchmarks/...``, relative to the
    root) from its file, registered in `sys.modules` under `name` (dataclasses look their module up). Folders such
    as benchmarks/ are not put on `sys.path`, where their modules would shadow the packages."""
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = sys.modules.setdefault(name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


def counter(source: str = "one", name: str = "cnt", keep: float = 1.0) -> dmm.Program:
    """An accumulator `name` fed by `source` (``"one"``: a constant 1; ``"src"``: an external input):
    ``name.out`` ← keep · ``name.out`` + ``source.out`` (so with ``"one"`` and keep = 1 it counts 0, 1, 2, ...)."""
    p = dmm.Program()
    p.add(source, neurons.const(1.0) if source == "one" else neurons.external())
    p.add(name, neurons.accumulator())
    p.link(f"{name}.out", f"{name}.accum", keep)
    p.link(f"{source}.out", f"{name}.delta", 1.0)
    return p


def neuron_param(machine, params, neuron: str, name: str):
    """Parameter `name` of `neuron` in `params` (the machine's own when None): `Machine.param`."""
    return machine.param(neuron, name, params)


def with_neuron_param(machine, params, neuron: str, name: str, value):
    """`params` (the machine's own when None) with parameter `name` of `neuron` set to `value`: `Machine.set_param`."""
    return machine.set_param(neuron, name, value, params)


def transformer_params(plain, vocab: int, length: int, d_model: int, heads: int, layers: int, seed: int) -> dict:
    """The plain-JAX baseline's parameter pytree (names and shapes from `plain.init`, `plain` the loaded
    ``benchmarks/plain_transformer.py``), filled with NumPy draws large enough that every parameter counts: weights
    and tables N(0, 1/rows), biases and offsets N(0, 0.1²), scales 1 + N(0, 0.1²)."""
    import jax
    import numpy as np

    shapes = jax.eval_shape(
        lambda k: plain.init(k, vocab=vocab, length=length, d_model=d_model, heads=heads, layers=layers), jax.random.key(0)
    )
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        z = rng.normal(size=leaf.shape)
        if len(leaf.shape) == 2:
            return z / np.sqrt(leaf.shape[0])
        return 0.1 * z + (1.0 if path[-1].key == "scale" else 0.0)

    return jax.tree_util.tree_map_with_path(draw, shapes)
