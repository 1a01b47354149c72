"""`dmm.Block`: blocks included under prefixes, chained and nested, against the same programs written by hand
(equal programs and equal compiled traces); port, kind and name errors."""

from __future__ import annotations

import numpy as np
import pytest

import dmm
import neurons
from reference import run_reference

VEC = dmm.Kind("vec", (2,))
M = np.asarray([[0.5, -1.0], [0.25, 0.75]])


def layer_program() -> dmm.Program:
    """y = x + tanh(linear(x)), with the skip path delayed to the branch's depth (two identities)."""
    p = dmm.Program()
    p.add("lin", neurons.linear(VEC, VEC, matrix=M, bias=[0.1, -0.2]))
    p.add("act", neurons.tanh(VEC))
    p.add("skip0", neurons.identity(VEC))
    p.add("skip1", neurons.identity(VEC))
    p.add("res", neurons.plus(VEC), initial={"out": [0.5, 0.5]})
    p.link("lin.out", "act.in", 1.5)
    p.link("act.out", "res.b", 0.8, trainable=False)
    p.link("skip0.out", "skip1.in", 1.0)
    p.link("skip1.out", "res.a", 1.0)
    return p


def layer() -> dmm.Block:
    return dmm.Block(layer_program(), inputs={"x": ("lin.in", "skip0.in")}, outputs={"y": "res.out"})


def by_hand(prefixes=("l0", "l1"), sep="/", head=None) -> dmm.Program:
    """The source x and the layer written out twice, in the order include makes them (after an identity `head`
    fed by x with weight 2, linked last, when given)."""
    p = dmm.Program()
    p.add("x", neurons.external(VEC))
    src = "x.out"
    if head:
        p.add(head, neurons.identity(VEC))
        src = f"{head}.out"
    for pre in prefixes:
        n = lambda s: f"{pre}{sep}{s}"  # noqa: E731
        p.add(n("lin"), neurons.linear(VEC, VEC, matrix=M, bias=[0.1, -0.2]))
        p.add(n("act"), neurons.tanh(VEC))
        p.add(n("skip0"), neurons.identity(VEC))
        p.add(n("skip1"), neurons.identity(VEC))
        p.add(n("res"), neurons.plus(VEC), initial={"out": [0.5, 0.5]})
        p.link(f"{n('lin')}.out", f"{n('act')}.in", 1.5)
        p.link(f"{n('act')}.out", f"{n('res')}.b", 0.8, trainable=False)
        p.link(f"{n('skip0')}.out", f"{n('skip1')}.in", 1.0)
        p.link(f"{n('skip1')}.out", f"{n('res')}.a", 1.0)
        p.link(src, f"{n('lin')}.in")
        p.link(src, f"{n('skip0')}.in")
        src = f"{n('res')}.out"
    if head:
        p.link("x.out", f"{head}.in", 2.0, trainable=False)
    return p


def test_two_chained_includes_equal_the_hand_built_program():
    blk = layer()
    p = dmm.Program()
    p.add("x", neurons.external(VEC))
    h = blk.include(p, "l0", connect={"x": "x.out"})
    assert h["y"] == "l0/res.out" and h.inputs == {"x": ("l0/lin.in", "l0/skip0.in")} and list(h) == ["y"]
    h = blk.include(p, "l1", connect={"x": h["y"]})
    want = by_hand()
    assert p == want
    assert dmm.depths(p)["l1/res"] == 7 and dmm.first_cycle(p, h["y"]) == 7
    steps = 9
    xs = np.random.default_rng(0).normal(size=(steps, 2)).astype(np.float32)
    got = dmm.compile(p).run(steps, inputs={"x.out": xs}, record="all")
    ref = run_reference(want, steps, {"x.out": xs})
    for s in want.streams():
        np.testing.assert_allclose(got[s], np.asarray(ref[s]), rtol=1e-5, atol=1e-6, err_msg=s)


def test_nested_blocks_and_alignment_after_including():
    blk = layer()
    inner = dmm.Program()
    inner.add("in", neurons.identity(VEC))
    h = blk.include(inner, "l0", connect={"x": "in.out"})
    h = blk.include(inner, "l1", connect={"x": h["y"]})
    two = dmm.Block(inner, inputs={"x": "in.in"}, outputs={"y": h["y"]})
    p = dmm.Program()
    p.add("x", neurons.external(VEC))
    out = two.include(p, "enc", connect={"x": "x.out"}, weight=2.0, trainable=False)
    assert out["y"] == "enc/l1/res.out"
    assert ("x.out", "enc/in.in", 2.0, False) in {(v.src, v.dst, v.weight, v.trainable) for v in p.links}
    # the same as the flat program written by hand: equal programs, equal traces
    flat = by_hand(prefixes=("enc/l0", "enc/l1"), head="enc/in")
    assert p == flat
    xs = np.random.default_rng(2).normal(size=(10, 2))
    got, want = run_reference(p, 10, {"x.out": xs}), run_reference(flat, 10, {"x.out": xs})
    assert all(np.array_equal(got[s], want[s]) for s in flat.streams())
    # a residual around the whole encoder is misaligned (depth 8 against 1); align delays the skip
    p.add("sum", neurons.plus(VEC))
    p.link(out["y"], "sum.a")
    p.link("x.out", "sum.b", 0.5)
    with pytest.raises(dmm.ProgramError, match="'sum' mixes"):
        dmm.depths(p)
    q = dmm.align(p)
    assert dmm.first_cycle(q, "sum.out") == 9 and "x~out~d7" in q.neurons
    steps = 11
    xs = np.random.default_rng(1).normal(size=(steps, 2))
    r = run_reference(q, steps, {"x.out": xs})
    # sum at cycle c = encoder's output at cycle c - 1 + 0.5 · x fed at cycle c - 8 (the encoder's latency)
    enc = np.asarray(r["enc/l1/res.out"])
    np.testing.assert_allclose(np.asarray(r["sum.out"])[8:], enc[7:-1] + 0.5 * xs[: steps - 8], rtol=1e-12)


def test_block_snapshot_and_network_entries_are_prefixed():
    prog = layer_program()
    blk = dmm.Block(prog, inputs={"x": "lin.in"}, outputs={"y": "res.out"})
    prog.add("later", neurons.identity(VEC))
    assert "later" not in blk.program.neurons  # the block keeps a snapshot
    assert blk.kind("x") == VEC and blk.kind("y") == VEC
    # NETWORK-kind parameters name streams; those of the block's neurons are prefixed
    p = dmm.Program()
    p.add("a", neurons.identity())
    p.add("u", neurons.constant_matrix({("a.out", "a.in"): 0.5, ("b.out", "a.in"): 1.0}))
    t = dmm.Program()
    assert dmm.Block(p, outputs={"u": "u.out"}).include(t, "k")["u"] == "k/u.out"
    assert t.neurons["k/u"].params["value"] == (("k/a.out", "k/a.in", 0.5), ("b.out", "k/a.in", 1.0))


def test_errors_name_ports_streams_and_kinds_and_leave_the_target_unchanged():
    blk = layer()
    p = dmm.Program()
    p.add("x", neurons.external(VEC))
    p.add("n", neurons.external())
    before = p.copy()
    with pytest.raises(dmm.ProgramError, match=r"no input port 'z'; its inputs: \['x'\]"):
        blk.include(p, "l0", connect={"z": "x.out"})
    with pytest.raises(dmm.ProgramError, match=r"block input 'x' has kind Kind\('vec', \(2,\)\) but 'n.out' has "
                                               r"kind Kind\('number', \(\)\)"):
        blk.include(p, "l0", connect={"x": "n.out"})
    with pytest.raises(dmm.UnknownStreamError, match="unknown neuron 'nope'"):
        blk.include(p, "l0", connect={"x": "nope.out"})
    with pytest.raises(dmm.ProgramError, match="bad prefix 'a.b'"):
        blk.include(p, "a.b")
    with pytest.raises(dmm.ProgramError, match="would be made twice"):
        blk.include(p, "l0", connect={"x": ["x.out", "x.out"]})
    assert p == before
    blk.include(p, "l0", connect={"x": "x.out"})
    with pytest.raises(dmm.ProgramError, match="neuron 'l0/lin' is already in the target"):
        blk.include(p, "l0", connect={"x": "l0/res.out"})
    other = dmm.Program()
    other.add("v", neurons.identity(dmm.Kind("vec", (3,))))
    with pytest.raises(dmm.ProgramError, match="has the name of another kind in the target"):
        dmm.Block(other).include(p, "o")
    with pytest.raises(dmm.UnknownStreamError, match=r"no output port 'z'; its outputs: \['y'\]"):
        blk.include(p, "l1")["z"]
    prog = layer_program()
    with pytest.raises(dmm.ProgramError, match="input port 'x' maps to 'res.out', an output port"):
        dmm.Block(prog, inputs={"x": "res.out"})
    with pytest.raises(dmm.ProgramError, match="output port 'y' maps to 'res.a', an input port"):
        dmm.Block(prog, outputs={"y": "res.a"})
    prog.add("num", neurons.identity())
    with pytest.raises(dmm.ProgramError, match=r"different kinds: lin.in \('vec'\), num.in \('number'\)"):
        dmm.Block(prog, inputs={"x": ("lin.in", "num.in")})
    with pytest.raises(dmm.UnknownStreamError, match="has no port 'nope'"):
        dmm.Block(prog, inputs={"x": "lin.nope"})
