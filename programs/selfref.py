"""Canonical self-referential DMM programs (`docs/semantics.md` §4.3, §6.2–6.7).

- The *lightweight pure DMMs* of the author's Processing sketches (`anhinga/fluid: Lightweight_Pure_DMMs`), where
  every stream is the network matrix: `lightweight_oscillator`, `lightweight_wave`, `self_extinguishing`.
- The V-value matrix wave of the Clojure engine (`matrix_wave`), its counter with asynchronous input
  (`async_counter`) and a counter edited live through Self (`live_edit_counter`).

The lightweight programs keep the sketches' numbering: input i and output j of the 12×11 matrix are
`FLUID_INPUTS[i]` and `FLUID_OUTPUTS[j]`, and `fluid_entry(i, j)` names W[i][j] as a (source, target) pair.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dmm
import neurons



FLUID_OUTPUTS = ("self.out", "n1.out", "n2.out", "n3.out", "n4.out", "n5.out", "n6.out", "n7.out", "n8.out", "n9.out",
                 "n10.out")
"""Output j of the lightweight pure DMMs (column j of W): Self, then constants at odd j and the neurons at even j."""

FLUID_INPUTS = ("self.accum", "self.delta", "n2.a", "n2.b", "n4.mask", "n4.main", "n6.mask", "n6.main", "n8.a", "n8.b",
                "n10.a", "n10.b")
"""Input i of the lightweight pure DMMs (row i of W): Self's accum (0) and delta (1, the "master row"), then two
inputs for each of n2 (plus), n4, n6 (mult), n8, n10 (max)."""


def fluid_entry(i: int, j: int) -> tuple[str, str]:
    """The (source output, target input) pair of entry W[i][j] of a lightweight pure DMM."""
    return FLUID_OUTPUTS[j], FLUID_INPUTS[i]


def _lightweight(w0: Mapping[tuple[int, int], float], constants: Mapping[int, Mapping[tuple[int, int], float]]) -> dmm.Program:
    """A lightweight pure DMM: W_0 entries {(i, j): w} and constant outputs {j: {(i, jj): u}} in sketch numbering."""
    net = dmm.NETWORK
    p = dmm.Program()
    p.add("self", neurons.pinned_self(("self.accum",)))
    for j in range(1, 11):
        name = f"n{j}"
        if j % 2:
            entries = {fluid_entry(i, jj): u for (i, jj), u in constants.get(j, {}).items()}
            p.add(name, neurons.constant_matrix(entries), initial={"out": entries} if entries else None)
        else:
            p.add(name, {2: neurons.plus, 4: neurons.mult, 6: neurons.mult, 8: neurons.maximum, 10: neurons.maximum}[j](net))
    for (i, j), w in w0.items():
        src, dst = fluid_entry(i, j)
        p.link(src, dst, w, trainable=(i, j) != (0, 0))
    return p


DECORATIVE = {(2, 0): 0.5, (4, 0): 0.5, (5, 0): 0.5}


def lightweight_oscillator() -> dmm.Program:
    """Lightweight pure DMM oscillating with period 2: W[1][1] = −1, +1, −1, … (sketch aug_26_16).

    Every stream is the 12×11 network matrix. W_0 has W[0][0] = 1 (Self's accumulator), W[1][1] = 1 (the master row
    picks constant n1, whose value has the single entry [1][1] = −2) and three decorative 0.5 links from Self. Each
    cycle adds W[1][1]·U to W, so W_c[1][1] = −W_{c−1}[1][1]: (W_c[1][1], X_c^1[1][1]) = (−1, −2) at odd c and
    (+1, +2) at even c.
    """
    return _lightweight({(0, 0): 1.0, (1, 1): 1.0, **DECORATIVE}, {1: {(1, 1): -2.0}})


def lightweight_wave() -> dmm.Program:
    """Lightweight pure DMM whose master row carries a wave of period 5 through the constants (sketch aug_27_16).

    Constant n_j (j = 1, 3, 5, 7, 9) holds −1 at [1][j] and +1 at [1][j + 2] (n9 wraps to [1][1]), so the single 1
    in row 1 of W_c moves to column 1, 3, 5, 7, 9, 1, … for c = 0, 1, 2, …; (W_c[1][1], X_c^1[1][1]) =
    (0, −1), (0, 0), (0, 0), (0, 0), (1, 1), (0, −1), … for c = 1, 2, ….
    """
    ring = (1, 3, 5, 7, 9)
    constants = {j: {(1, j): -1.0, (1, ring[(t + 1) % 5]): 1.0} for t, j in enumerate(ring)}
    return _lightweight({(0, 0): 1.0, (1, 1): 1.0, **DECORATIVE}, constants)


def self_extinguishing() -> dmm.Program:
    """Lightweight pure DMM that slowly switches itself off (sketch aug_25_16).

    W_0 has W[0][0] = 1, W[1][2] = −0.1 and the decorative links; the master row adds −0.1·(n2's output) =
    −0.05·κ·W to W, so the rows ≥ 1 stay proportional, W_c = κ_c·W_0, with κ_0 = κ_1 = 1 and
    κ_{c+1} = κ_c − 0.05·κ_c·κ_{c−1}² (W_c[1][2] = −0.1, −0.1, −0.095, −0.09025, …); W_c[0][0] = 1 throughout.
    """
    return _lightweight({(0, 0): 1.0, (1, 2): -0.1, **DECORATIVE}, {})


def wave_update(k: int) -> dict[tuple[str, str], float]:
    """U_k of `matrix_wave`: −1 at W[self.delta, update-k], +1 at W[self.delta, update-(k mod 3 + 1)]."""
    return {(f"update-{k}.out", "self.delta"): -1.0, (f"update-{k % 3 + 1}.out", "self.delta"): 1.0}


def matrix_wave() -> dmm.Program:
    """The V-value matrix wave (Clojure engine, oct_19_2016): Self's delta row cycles update-1 → 2 → 3, period 3.

    Self plus three update registers (identity neurons of the NETWORK kind with weight-1 self-loops) holding
    U_k = −E(self.delta ← update-k) + E(self.delta ← update-(k mod 3 + 1)). W_0 links self.delta ← update-1; each
    cycle adds the selected U to W, so row self.delta of W_c has its 1 at update-1, update-2, update-3, update-1, …
    for c = 0, 1, 2, 3, … (the other entries of the row are explicit zeros).
    """
    p = dmm.Program()
    neurons.add_self(p)
    for k in (1, 2, 3):
        p.add(f"update-{k}", neurons.identity(dmm.NETWORK), initial={"out": wave_update(k)})
        p.link(f"update-{k}.out", f"update-{k}.in", 1.0)
    p.link("update-1.out", "self.delta", 1.0)
    return p


def async_counter(events: Mapping[int, Any] | None = None) -> dmm.Program:
    """A counter with asynchronous input (Clojure engine, oct_28_2016): printer(c) = Σ_{k ≤ c−2} reader(k).

    `events` {cycle: V-value} are values that arrive at those cycles (e.g. {5: {"a": 1}}); at other cycles the
    reader emits {step: 1}. The accumulator adds the reader's values; the printer sees the count two cycles late
    (one link reader → accum, one accum → printer). Without events, printer.to-print = {}, {}, {step: 1},
    {step: 2}, … at c = 1, 2, 3, 4, …; with {5: {"a": 1}} it is {step: 4, a: 1} at c = 7. The stream kind's keys
    are "step" and the keys of the events. The program has a Self neuron (as upstream), so it can be edited live.
    """
    events = dict(events or {})
    default = {"step": 1.0}
    kind = dmm.vvalues.keyed_kind("counts", default, *events.values())
    p = dmm.Program()
    neurons.add_self(p)
    p.add("reader", neurons.reader(kind, events, default=default))
    p.add("accum", neurons.accumulator(kind))
    p.add("printer", neurons.sink({"to-print": kind}))
    p.link("accum.out", "accum.accum", 1.0)
    p.link("reader.out", "accum.delta", 1.0)
    p.link("accum.out", "printer.to-print", 1.0)
    return p


def live_edit_counter(edit_cycle: int = 4, delta: float = -0.5) -> dmm.Program:
    """A counter whose self-loop is edited live through Self: cnt.out = 0, 1, 2, 3, 4, 3, 2.5, 2.25, 2.125 at
    c = 1..9 with the defaults (§6.7).

    A ticker feeds 1 per cycle into the accumulator `cnt` (self-loop weight 1). The edit channel `updater` emits
    ΔW = {cnt.out → cnt.accum: delta} at `edit_cycle` into Self's delta: the edit enters W at edit_cycle + 1 and is
    first used by the down movement of edit_cycle + 2, after which cnt_c = (1 + delta)·cnt_{c−1} + 1.
    """
    p = dmm.Program()
    neurons.add_self(p)
    p.add("ticker", neurons.const(1.0))
    p.add("cnt", neurons.accumulator())
    p.add("updater", neurons.edit_channel({edit_cycle: {("cnt.out", "cnt.accum"): delta}}))
    p.link("cnt.out", "cnt.accum", 1.0)
    p.link("ticker.out", "cnt.delta", 1.0)
    p.link("updater.out", "self.delta", 1.0)
    return p
