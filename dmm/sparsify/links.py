"""Link addressing: the ``(src, dst)`` pair of every stored W entry, masks of given links, the live links of a state.

Every block stores its values in an array ``params["W"][kind]`` (dense: the (M, N) matrix; sparse: one value per
link); `Machine.blocks[kind].entries` gives the matrix entry (row, column) of each stored value, so the functions
here treat both layouts alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from dmm import Machine
from dmm.train import TrainState

Link = tuple[str, str]
"""A link, ``(source output stream, destination input stream)``."""


def link_names(machine: Machine) -> dict[str, np.ndarray]:
    """For every kind, an object array shaped like ``params["W"][kind]`` holding the ``(src, dst)`` pair of each
    stored entry (dense blocks: (M, N) grid; sparse blocks: one pair per stored link).

    **Arguments:** `machine`: the compiled `Machine`.
    """
    out = {}
    for k in machine.params["W"]:
        rows, cols = machine.blocks[k].entries
        dst, src = machine.layout.rows[k], machine.layout.cols[k]
        names = np.empty(np.shape(rows), object)
        for p in np.ndindex(names.shape):
            names[p] = (src[cols[p]], dst[rows[p]])
        out[k] = names
    return out


def links_mask(machine: Machine, links: Iterable[Link]) -> dict[str, np.ndarray]:
    """Boolean arrays shaped like ``params["W"]``: True at the given ``(src, dst)`` links (unknown pairs raise
    `ProgramError`).

    **Arguments:** `machine`: the compiled `Machine`; `links`: ``(src, dst)`` pairs.
    """
    out = {k: np.zeros(np.shape(w), bool) for k, w in machine.params["W"].items()}
    for src, dst in links:
        k, pos = machine.entry(src, dst)
        out[k][pos] = True
    return out


def live_links(state: TrainState, machine: Machine) -> dict[Link, float]:
    """The trainable links still in the mask of `state` (a `TrainState` of a trainer of `machine`), ``{(src, dst):
    weight}`` in storage order."""
    out = {}
    for k, mask in state.mask["W"].items():
        w = np.asarray(state.params["W"][k])
        rows, cols = machine.blocks[k].entries
        dst, src = machine.layout.rows[k], machine.layout.cols[k]
        for p in zip(*np.nonzero(np.asarray(mask))):
            out[(src[cols[p]], dst[rows[p]])] = float(w[p])
    return out


def check_links(machine: Machine, links: Iterable[Link]) -> None:
    """Raise `ProgramError` unless every ``(src, dst)`` pair of `links` is a stored entry of `machine`."""
    for src, dst in links:
        machine.entry(src, dst)
