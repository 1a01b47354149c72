"""The reader: an external input with an asynchronous event schedule."""

from __future__ import annotations

import numpy as np
import pytest

import dmm
import neurons


def test_schedule_and_default():
    p = dmm.Program()
    p.add("r", neurons.reader(events={2: 5.0, 5: -1.0}, default=0.5))
    trace = dmm.compile(p).run(6)
    np.testing.assert_array_equal(trace["r.out"], [0.5, 5.0, 0.5, 0.5, -1.0, 0.5])


def test_vvalue_events_and_caller_override():
    kind = dmm.vvalues.keyed_kind("counts", {"step": 1}, {"a": 1})
    p = dmm.Program()
    p.add("r", neurons.reader(kind, {3: {"a": 2}}, default={"step": 1}))
    m = dmm.compile(p)
    trace = m.run(4)
    assert [dmm.vvalues.pruned(v) for v in dmm.vvalues.from_trace(trace, "r.out")] == [
        {"step": 1.0}, {"step": 1.0}, {"a": 2.0}, {"step": 1.0}]
    fed = m.run(4, inputs={"r.out": np.full((4, 2), 7.0)})
    np.testing.assert_array_equal(fed["r.out"], 7.0)


def test_default_zero_and_no_events():
    p = dmm.Program()
    p.add("r", neurons.reader(dmm.Kind("vec", (2,))))
    np.testing.assert_array_equal(dmm.compile(p).run(3)["r.out"], 0.0)


def test_bad_events():
    with pytest.raises(dmm.ProgramError, match="event cycle 0"):
        neurons.reader(events={0: 1.0})
    with pytest.raises(dmm.ProgramError, match="shape"):
        neurons.reader(dmm.Kind("vec", (2,)), {1: [1.0, 2.0, 3.0]})
    with pytest.raises(dmm.ProgramError, match="outside the key table"):
        neurons.reader(dmm.Kind.keyed("k", ["a"]), {1: {"b": 1}})
