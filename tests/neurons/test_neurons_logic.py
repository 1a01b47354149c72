"""The less-or-equal neuron on numbers and keyed vectors, against the V-value ≤."""

from __future__ import annotations

import numpy as np
import pytest

import dmm
import neurons


@pytest.mark.parametrize("left, right, expected", [(2, 1, (0, 1)), (1, 2, (1, 0)), (1, 1, (1, 0)), (0, 0, (1, 0))])
def test_less_or_equal_numbers(left, right, expected):
    p = dmm.Program()
    p.add("l", neurons.const(left))
    p.add("r", neurons.const(right))
    p.add("le", neurons.less_or_equal())
    p.link("l.out", "le.left")
    p.link("r.out", "le.right")
    trace = dmm.compile(p).run(2)
    assert (trace.at("le.true", 2), trace.at("le.false", 2)) == expected


def test_less_or_equal_vectors():
    counts = dmm.Kind.keyed("counts", ["a", "b"])
    p = dmm.Program()
    p.add("l", neurons.reader(counts, {1: {"a": 1}, 2: {"a": 1, "b": 3}, 3: {"b": -1}}))
    p.add("r", neurons.const(dmm.vvalues.flatten(counts, {"a": 1, "b": 2}), counts))
    p.add("le", neurons.less_or_equal(counts))
    p.link("l.out", "le.left")
    p.link("r.out", "le.right")
    trace = dmm.compile(p).run(4, record="all")
    np.testing.assert_array_equal(trace["le.true"][1:], [1, 0, 1])  # cycles 2..4 see cycles 1..3 of l
    np.testing.assert_array_equal(trace["le.true"] + trace["le.false"], 1)
    for c in range(2, 5):
        left = dmm.vvalues.unflatten(counts, trace.at("le.left", c))
        right = dmm.vvalues.unflatten(counts, trace.at("le.right", c))
        assert trace.at("le.true", c) == float(dmm.vvalues.less_or_equal(left, right))
