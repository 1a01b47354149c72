"""`dmm.depths`, `dmm.align`, `dmm.first_cycle`, `dmm.check_rows` and the losses' ``first=``: random feed-forward
graphs against a hand alignment written here (its own depth recursion and one unshared delay chain per late link),
run on the NumPy reference interpreter; first cycles against impulse responses of compiled runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dmm
import dmm.train
import neurons
from reference import run_reference

VEC = dmm.Kind("vec", (2,))
TYPES = ("identity", "plus", "linear", "accum")
PORTS = {"identity": ("in",), "plus": ("a", "b"), "linear": ("in",), "accum": ("delta",)}


@st.composite
def graphs(draw):
    """A random DAG: (n sources, [(type, {port: [(source index, weight, trainable)]})]); neuron i may read any
    neuron before it, so branch lengths vary."""
    n_src = draw(st.integers(1, 2))
    body = []
    for i in range(draw(st.integers(1, 7))):
        t = draw(st.sampled_from(TYPES))
        wires = {}
        for port in PORTS[t]:
            srcs = draw(st.lists(st.integers(0, n_src + i - 1), min_size=1, max_size=2, unique=True))
            wires[port] = [(s, draw(st.floats(0.5, 1.5)), draw(st.booleans())) for s in srcs]
        body.append((t, wires))
    return n_src, body


def name(i: int, n_src: int) -> str:
    return f"s{i}" if i < n_src else f"n{i - n_src}"


def build(spec) -> dmm.Program:
    n_src, body = spec
    rng = np.random.default_rng(len(body))
    p = dmm.Program()
    for i in range(n_src):
        p.add(name(i, n_src), neurons.external(VEC))
    for j, (t, wires) in enumerate(body):
        n = f"n{j}"
        if t == "identity":
            p.add(n, neurons.identity(VEC))
        elif t == "plus":
            p.add(n, neurons.plus(VEC))
        elif t == "linear":
            p.add(n, neurons.linear(VEC, VEC, matrix=rng.uniform(0.2, 1.0, (2, 2)), bias=np.zeros(2)))
        else:
            p.add(n, neurons.accumulator(VEC), initial={"out": [0.0, 0.0]})
            p.link(f"{n}.out", f"{n}.accum", 0.5)  # state: a self-link, ignored by depths
        for port, srcs in wires.items():
            for s, w, tr in srcs:
                p.link(f"{name(s, n_src)}.out", f"{n}.{port}", w, trainable=tr)
    return p


def hand_depths(spec) -> dict[str, int]:
    n_src, body = spec
    d = {name(i, n_src): 1 for i in range(n_src)}
    for j, (_, wires) in enumerate(body):
        d[f"n{j}"] = 1 + max(d[name(s, n_src)] for srcs in wires.values() for s, _, _ in srcs)
    return d


def hand_aligned(spec) -> tuple[dmm.Program, bool]:
    """The same graph with an explicit, unshared delay chain on every late link; and whether any was needed."""
    n_src, body = spec
    d = hand_depths(spec)
    p = build((n_src, [(t, {}) for t, _ in body]))
    late = False
    for j, (_, wires) in enumerate(body):
        for port, srcs in wires.items():
            for s, w, tr in srcs:
                src = f"{name(s, n_src)}.out"
                for k in range(d[f"n{j}"] - 1 - d[name(s, n_src)]):
                    late = True
                    hop = f"hand_{j}_{port}_{s}_{k}"
                    p.add(hop, neurons.identity(VEC))
                    p.link(src, f"{hop}.in", 1.0, trainable=False)
                    src = f"{hop}.out"
                p.link(src, f"n{j}.{port}", w, trainable=tr)
    return p, late


def feeds(spec, steps, rng):
    return {f"s{i}.out": rng.uniform(0.5, 1.5, (steps, 2)) for i in range(spec[0])}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_align_equals_a_hand_alignment(spec):
    p = build(spec)
    before = p.copy()
    want, late = hand_aligned(spec)
    q = dmm.align(p)
    assert p == before  # the original is not modified
    # (a) aligned: depths passes, with the hand recursion's depths on the original neurons
    d = dmm.depths(q)
    assert {n: d[n] for n in p.neurons} == hand_depths(spec)
    # the error mode raises exactly when the hand check finds a late link, and so does depths
    if late:
        with pytest.raises(dmm.ProgramError, match="mixes data fed at different cycles"):
            dmm.align(p, mode="error")
        with pytest.raises(dmm.ProgramError, match="mixes data fed at different cycles"):
            dmm.depths(p)
    else:
        assert dmm.align(p, mode="error") == p and q == p
    # weights and trainable flags stay on the links into the original ports; delay links are fixed weight-1
    new = {(link.src, link.dst): link for link in q.links}
    for link in p.links:
        into = [v for (s, dd), v in new.items() if dd == link.dst and (s == link.src or s.startswith(
            link.src.replace(".", "~") + "~d"))]
        assert len(into) == 1 and (into[0].weight, into[0].trainable) == (link.weight, link.trainable)
    for n in set(q.neurons) - set(p.neurons):
        assert q.neurons[n].type == neurons.identity(VEC)
        assert all((v.weight, v.trainable) == (1.0, False) for (s, dd), v in new.items() if dd == f"{n}.in")
    # one chain per source stream, as long as its latest consumer needs
    hd, longest = hand_depths(spec), {}
    for link in p.links:
        s, n = link.src.split(".")[0], link.dst.split(".")[0]
        if s != n:
            longest[s] = max(longest.get(s, 0), hd[n] - 1 - hd[s])
    assert len(q.neurons) - len(p.neurons) == sum(longest.values())
    assert dmm.align(q) == q
    # (b) the same traces as the hand-aligned twin, on every stream of the original neurons
    steps = max(d.values()) + 2
    xs = feeds(spec, steps, np.random.default_rng(0))
    got, ref = run_reference(q, steps, xs), run_reference(want, steps, xs)
    for s in p.streams():
        np.testing.assert_allclose(np.asarray(got[s]), np.asarray(ref[s]), rtol=1e-12, atol=1e-12, err_msg=s)
    # first_cycle is the first nonzero row of the impulse response (positive weights: nothing cancels)
    impulse = run_reference(q, steps, {s: np.eye(steps, 1)[:, [0, 0]] for s in xs})
    for s in q.streams():
        if not s.endswith(".accum"):  # an accumulator's accum port has only its self-link
            rows = np.flatnonzero(np.abs(np.asarray(impulse[s]).reshape(steps, -1)).sum(1) > 0)
            assert int(rows[0]) + 1 == dmm.first_cycle(q, s), s


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs())
def test_first_cycle_is_the_first_nonzero_row_of_an_impulse_response(spec):
    """Sources fed a positive impulse at cycle 1 (positive weights and matrices, so nothing cancels): every stream
    of the aligned program is first nonzero at `first_cycle`."""
    q = dmm.align(build(spec))
    steps = max(dmm.depths(q).values()) + 2
    xs = {f"s{i}.out": np.eye(steps, 1)[:, [0, 0]].astype(np.float32) for i in range(spec[0])}
    t = dmm.compile(q).run(steps, inputs=xs, record="all")
    for s in q.streams():
        nonzero = np.flatnonzero(np.abs(np.asarray(t[s]).reshape(steps, -1)).sum(1) > 0)
        if s.endswith(".accum"):  # only its self-link feeds it
            with pytest.raises(dmm.ProgramError, match="carries nothing"):
                dmm.first_cycle(q, s)
            continue
        assert int(nonzero[0]) + 1 == dmm.first_cycle(q, s), s
        assert dmm.check_rows(q, s, slice(int(nonzero[0]), None)) == slice(int(nonzero[0]), None)
        if nonzero[0] > 0:
            with pytest.raises(dmm.ProgramError, match=rf"reads row {nonzero[0] - 1} \(cycle {nonzero[0]}\)"):
                dmm.check_rows(q, s, np.arange(nonzero[0] - 1, steps))


def chain() -> dmm.Program:
    """x -> f -> g -> add.a, x -> add.b: add is misaligned by 2."""
    p = dmm.Program()
    p.add("x", neurons.external())
    p.add("f", neurons.identity())
    p.add("g", neurons.identity())
    p.add("add", neurons.plus())
    p.link("x.out", "f.in")
    p.link("f.out", "g.in")
    p.link("g.out", "add.a")
    p.link("x.out", "add.b", 0.5, trainable=False)
    return p


def test_misalignment_error_names_the_neuron_ports_streams_and_depths():
    p = chain()
    with pytest.raises(dmm.ProgramError, match=r"neuron 'add' mixes .* add\.a <- g\.out \(depth 3\), "
                                               r"add\.b <- x\.out \(depth 1\)"):
        dmm.depths(p)
    with pytest.raises(dmm.ProgramError, match="'add' mixes"):
        dmm.first_cycle(p, "add.out")
    assert dmm.first_cycle(p, "add.a") == 4 and dmm.first_cycle(p, "add.b") == 2  # each input alone is fine
    with pytest.raises(dmm.ProgramError, match="mode must be one of"):
        dmm.align(p, mode="pad")
    q = dmm.align(p)
    assert dmm.depths(q) == {"x": 1, "f": 2, "g": 3, "add": 4, "x~out~d1": 2, "x~out~d2": 3}
    assert {(v.src, v.dst, v.weight, v.trainable) for v in q.links} >= {
        ("x~out~d2.out", "add.b", 0.5, False), ("x.out", "x~out~d1.in", 1.0, False),
        ("x~out~d1.out", "x~out~d2.in", 1.0, False)}
    assert dmm.latency.delay_name("x.out", 2) == "x~out~d2"


def test_chains_are_shared_per_source_stream_reused_and_clashes_refused():
    p = chain()
    p.add("mul", neurons.mult())
    p.link("f.out", "mul.main")
    p.link("x.out", "mul.mask")
    q = dmm.align(p)  # add.b needs x two cycles late, mul.mask one: one chain of two, tapped at both
    assert [n for n in q.neurons if "~" in n] == ["x~out~d1", "x~out~d2"]
    assert ("x~out~d1.out", "mul.mask") in {(v.src, v.dst) for v in q.links}
    assert dmm.depths(q)["mul"] == 3
    # grow the aligned program and align again: the existing chain is extended, not duplicated
    q.add("late", neurons.plus())
    q.link("add.out", "late.a")
    q.link("x.out", "late.b")
    r = dmm.align(q)
    assert [n for n in r.neurons if "~" in n] == ["x~out~d1", "x~out~d2", "x~out~d3"]
    assert ("x~out~d3.out", "late.b") in {(v.src, v.dst) for v in r.links} and dmm.depths(r)["late"] == 5
    # a neuron of a delay's name that is not that delay is a clash
    bad = chain()
    bad.add("x~out~d1", neurons.tanh())
    with pytest.raises(dmm.ProgramError, match="'x~out~d1' .* is taken by a neuron that is not that delay"):
        dmm.align(bad)


def test_self_links_cycles_and_explicit_sources():
    p = dmm.Program()
    p.add("x", neurons.external())
    p.add("acc", neurons.accumulator(), initial={"out": 2.0})
    p.link("acc.out", "acc.accum", 1.0)  # a self-link: state, ignored
    p.link("x.out", "acc.delta")
    p.add("a", neurons.identity())
    p.add("b", neurons.plus())
    p.link("acc.out", "b.a")
    p.link("b.out", "a.in")
    p.link("a.out", "b.b")  # a and b form a cycle
    p.add("after", neurons.identity())
    p.link("b.out", "after.in")
    p.add("one", neurons.const(1.0))
    p.add("gate", neurons.mult())
    p.link("acc.out", "gate.main")
    p.link("one.out", "gate.mask")
    with pytest.raises(dmm.ProgramError, match="'gate' mixes .* gate.main <- acc.out \\(depth 2\\), gate.mask <- "
                                               "one.out \\(depth 1\\)"):
        dmm.depths(p)
    q = dmm.align(p)
    assert dmm.depths(q) == {"x": 1, "acc": 2, "one": 1, "gate": 3, "one~out~d1": 2}
    assert q.initial["acc.out"] == 2.0 and ("acc.out", "acc.accum") in {(v.src, v.dst) for v in q.links}
    with pytest.raises(dmm.ProgramError, match="neuron 'a' lies on a cycle of links"):
        dmm.first_cycle(q, "a.out")
    with pytest.raises(dmm.ProgramError, match="neuron 'after' is fed by neuron '(a|b)', which lies on a cycle"):
        dmm.first_cycle(q, "after.in")
    # explicit sources: the constant is not reached from x, so gate is aligned; a stream names its neuron
    assert dmm.depths(p, sources="x") == dmm.depths(p, sources=["x.out"]) == {"x": 1, "acc": 2, "gate": 3}
    assert dmm.first_cycle(p, "gate.mask", source="one") == 2
    with pytest.raises(dmm.ProgramError, match="not reachable from the sources"):
        dmm.first_cycle(p, "one.out", source="x")
    with pytest.raises(dmm.UnknownStreamError, match="unknown neuron 'nope'"):
        dmm.depths(p, sources="nope")
    with pytest.raises(dmm.ProgramError, match="sources is empty"):
        dmm.depths(p, sources=[])
    # a named source's own incoming links are not followed: acc is then a source, the cycle stays a cycle
    assert dmm.depths(p, sources="acc") == {"acc": 1, "gate": 2}


def test_check_rows_forms_and_messages():
    q = dmm.align(chain())  # add.out first carries the input at cycle 4
    with pytest.raises(dmm.ProgramError, match=r"the loss reads row 2 \(cycle 3\) of 'add.out', which first "
                                               r"carries the input at cycle 4"):
        dmm.check_rows(q, "add.out", 2)
    assert dmm.check_rows(q, "add.out", 3) == 3
    assert dmm.check_rows(q, "add.out", [5, 3, 4]) == [5, 3, 4]
    assert dmm.check_rows(q, "add.out", slice(1, 1)) == slice(1, 1)  # reads nothing
    with pytest.raises(dmm.ProgramError, match="row 0"):
        dmm.check_rows(q, "add.out", slice(None, 6))
    with pytest.raises(dmm.ProgramError, match="needs the number of steps"):
        dmm.check_rows(q, "add.out", -1)
    assert dmm.check_rows(q, "add.out", -2, steps=6) == -2
    with pytest.raises(dmm.ProgramError, match="row 2"):
        dmm.check_rows(q, "add.out", slice(-4, None), steps=6)
    with pytest.raises(dmm.ProgramError, match="outside a trace of 6 rows"):
        dmm.check_rows(q, "add.out", 6, steps=6)
    with pytest.raises(dmm.ProgramError, match="integer indices"):
        dmm.check_rows(q, "add.out", np.array([3.5]))
    assert dmm.check_rows(q, "add.out", 0, start=3) == 0  # a trace continuing after 3 cycles: row 0 is cycle 4
    assert dmm.first_cycle(q, "add.b") == 4  # an input port: fed by the delay chain, at the neuron's depth
    with pytest.raises(dmm.ProgramError, match=r"row 2 \(cycle 3\) of 'add.b'"):
        dmm.check_rows(q, "add.b", 2)
    # traced rows are not checked (the check is static)
    assert int(jax.jit(lambda r: dmm.check_rows(q, "add.out", r))(jnp.int32(0))) == 0


def test_losses_refuse_rows_before_first():
    vocab = 3
    k = dmm.Kind("logits", (vocab,))
    p = dmm.Program()
    p.add("x", neurons.external(k))
    p.add("mid", neurons.identity(k))
    p.add("head", neurons.identity(k))
    p.link("x.out", "mid.in")
    p.link("mid.out", "head.in")
    first = dmm.first_cycle(p, "head.out")
    assert first == 3
    m = dmm.compile(p)
    steps = 6
    xs = np.random.default_rng(0).normal(size=(steps, vocab)).astype(np.float32)
    t = m.run(steps, inputs={"x.out": xs}, record=["head.out"])
    labels = jnp.asarray(xs[: steps - 2].argmax(-1), jnp.int32)
    # the rows from first - 1 on hold the delayed inputs: accuracy 1, the same with and without first=
    acc = dmm.train.trace_accuracy(t, "head.out", labels, rows=slice(first - 1, None), first=first)
    assert float(acc) == 1.0
    ce = dmm.train.trace_cross_entropy(t, "head.out", labels, rows=np.arange(2, steps), first=first)
    assert float(ce) == pytest.approx(float(dmm.train.cross_entropy(jnp.asarray(xs[:-2]), labels)), rel=1e-6)
    with pytest.raises(dmm.ProgramError, match=r"reads row 1 \(cycle 2\) of 'head.out', which first carries the "
                                               r"input at cycle 3"):
        dmm.train.trace_cross_entropy(t, "head.out", labels, rows=slice(1, -1), first=first)
    with pytest.raises(dmm.ProgramError, match="row 0"):
        dmm.train.trace_logits(t, "head.out", -steps, first=first)
    with pytest.raises(dmm.ProgramError, match="first must be an int"):
        dmm.train.trace_logits(t, "head.out", 3, first=2.5)
    # a continued run (here a trace whose first row is cycle 7): every row is fine
    later = dmm.Trace({"head.out": t["head.out"]}, t.kinds, 6)
    assert dmm.train.trace_logits(later, "head.out", 0, first=first).shape == (vocab,)
    # a batch: its rows are on axis 1, and the earliest instance counts
    rows = np.stack([t["head.out"], t["head.out"]])
    batch = dmm.BatchTrace({"head.out": rows}, t.kinds, np.asarray([6, 0]))
    with pytest.raises(dmm.ProgramError, match="row 1"):
        dmm.train.trace_logits(batch, "head.out", [1, 2], first=first)
    assert dmm.train.trace_logits(batch, "head.out", [2, 3], first=first).shape == (2, 2, vocab)
    # under jax.jit the trace's first cycle is traced: not checked (the check is static)
    early = jax.jit(lambda tr: dmm.train.trace_logits(tr, "head.out", 0, first=first))(t)
    np.testing.assert_array_equal(np.asarray(early), t["head.out"][0])
