"""The pinned Self of the lightweight pure DMMs."""

from __future__ import annotations

import pytest

import dmm
import neurons


def test_pinned_rows_ignore_deltas_in_a_multi_kind_network():
    p = dmm.Program()
    p.add("self", neurons.pinned_self(("self.accum", "cnt.accum")))
    p.link("self.out", "self.accum", 1.0, trainable=False)
    p.add("one", neurons.const(1.0))
    p.add("cnt", neurons.accumulator())
    p.link("cnt.out", "cnt.accum")
    p.link("one.out", "cnt.delta")
    # every cycle the update adds 1 to both self-loops and to the ticker link
    upd = {("cnt.out", "cnt.accum"): 1.0, ("one.out", "cnt.delta"): 1.0, ("self.out", "self.accum"): 1.0}
    p.add("upd", neurons.constant_matrix(upd), initial={"out": upd})
    p.link("upd.out", "self.delta")
    m = dmm.compile(p)
    assert len(m.network.kind.shape) == 1  # flat: a NETWORK block and a number block
    trace = m.run(4, record=["self.out"])
    for c in range(1, 5):
        state = m.write(m.init_state(), "self.out", trace.at("self.out", c))
        assert m.weight("cnt.out", "cnt.accum", state=state) == 1.0  # pinned
        assert m.weight("self.out", "self.accum", state=state) == 1.0  # pinned
        assert m.weight("one.out", "cnt.delta", state=state) == 1.0 + c  # not pinned


def test_unknown_row():
    p = dmm.Program()
    p.add("self", neurons.pinned_self(("self.nope",)))
    p.link("self.out", "self.accum", 1.0, trainable=False)
    with pytest.raises(dmm.ProgramError, match="'self.nope' is not an input port"):
        dmm.compile(p)
