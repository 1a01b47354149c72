"""The duplicate-character detector (`docs/semantics.md` §6.1) against its closed form, cycle by cycle."""

from __future__ import annotations

import numpy as np
import pytest

import dmm
import programs


TEXT = "test string."


def emissions(text: str, every: int, steps: int) -> dict[int, str]:
    """The input neuron emits text[p] at cycle every·p + 1, then the last character every `every` cycles."""
    out = {}
    for c in range(1, steps + 1):
        if (c - 1) % every == 0:
            out[c] = text[min((c - 1) // every, len(text) - 1)]
    return out


def closed_form(text: str, every: int, steps: int, clip: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """dict-1(c) = relu(max_k #{emissions of k at cycles ≤ c − 4} − 1), dict-2(c) = #{'.' at cycles ≤ c − 3}."""
    em = emissions(text, every, steps)
    d1, d2 = [], []
    for c in range(1, steps + 1):
        counts: dict[str, int] = {}
        for e, ch in em.items():
            if e <= c - 4:
                counts[ch] = counts.get(ch, 0) + 1
        d1.append(max(max(counts.values(), default=0) - 1, 0))
        dots = sum(1 for e, ch in em.items() if ch == "." and e <= c - 3)
        d2.append(dots if clip is None else min(dots, clip))
    return np.array(d1, np.float32), np.array(d2, np.float32)


@pytest.fixture(scope="module")
def trace():
    return dmm.compile(programs.duplicate_detector()).run(170)


def test_whole_trace_matches_closed_form(trace):
    d1, d2 = closed_form(TEXT, 10, 170)
    np.testing.assert_array_equal(trace["output.dict-1"], d1)
    np.testing.assert_array_equal(trace["output.dict-2"], d2)
    np.testing.assert_array_equal(trace["timer.out"], np.arange(1, 171, dtype=np.float32))


def test_recorded_table(trace):
    """The recorded 150-cycle table (run-150.txt, project cycles)."""
    d1, d2 = trace["output.dict-1"][:150], trace["output.dict-2"][:150]
    spans = [((1, 34), 0, 0), ((35, 64), 1, 0), ((65, 113), 2, 0), ((114, 123), 2, 1), ((124, 133), 2, 2),
             ((134, 143), 2, 3), ((144, 144), 2, 4), ((145, 150), 3, 4)]
    for (a, b), v1, v2 in spans:
        assert (d1[a - 1 : b] == v1).all() and (d2[a - 1 : b] == v2).all(), (a, b)
    first = {v: int(np.argmax(d1 >= v)) + 1 for v in (1, 2, 3)}
    assert first == {1: 35, 2: 65, 3: 145}
    assert {v: int(np.argmax(d2 >= v)) + 1 for v in (1, 2, 3, 4)} == {1: 114, 2: 124, 3: 134, 4: 144}


def test_beyond_150(trace):
    d1, d2 = trace["output.dict-1"], trace["output.dict-2"]
    assert d1[154 - 1] == 3 and d1[155 - 1] == 4 and d1[164 - 1] == 4 and d1[165 - 1] == 5
    assert d2[153 - 1] == 4 and d2[154 - 1] == 5  # unclipped by default


def test_clip_switch():
    trace = dmm.compile(programs.duplicate_detector(clip=4.0)).run(170, record=["output.dict-2"])
    _, d2 = closed_form(TEXT, 10, 170, clip=4)
    np.testing.assert_array_equal(trace["output.dict-2"], d2)
    assert trace["output.dict-2"].max() == 4


def test_upstream_seeding_gives_the_same_trace(trace):
    """The JAX port seeds norm = 1, const_1 = 1, eos = e_'.'; under the Rule the trace is the same."""
    p = programs.duplicate_detector()
    chars = p.kinds["chars"]
    p.set_initial("norm.out", 1.0)
    p.set_initial("const_1.out", 1.0)
    p.set_initial("eos.out", chars.onehot("."))
    seeded = dmm.compile(p).run(170, record=["output.dict-1", "output.dict-2"])
    np.testing.assert_array_equal(seeded["output.dict-1"], trace["output.dict-1"])
    np.testing.assert_array_equal(seeded["output.dict-2"], trace["output.dict-2"])


def test_other_text():
    text, every = "abca.b.", 3
    t = dmm.compile(programs.duplicate_detector(text, every=every)).run(40)
    d1, d2 = closed_form(text, every, 40)
    np.testing.assert_array_equal(t["output.dict-1"], d1)
    np.testing.assert_array_equal(t["output.dict-2"], d2)


def test_structure():
    p = programs.duplicate_detector()
    assert len(p.links) == 11 and all(link.weight == 1.0 for link in p.links)
    assert p.initial == {}
    assert [port.name for port in p.neuron("output").type.inputs] == ["dict-1", "dict-2"]
