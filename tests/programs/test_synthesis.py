"""Tests of the detector synthesis: the V-value neurons, the 1,486-link student, its loss and a short training, and
the experiment script (experiments/synthesis.py, outside the installed packages)."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

import dmm
import dmm.files
import neurons
from programs import synthesis
from programs.detector import duplicate_detector

from helpers import load_script

experiment = load_script("experiments/synthesis.py", "synthesis_experiment")  # a script outside the packages

V = neurons.vkind("ab.")
N = V.index(":number")


def one(neuron, inputs, kind=V):
    """Run a single neuron type's function on concrete inputs (the neuron's formula, outside any machine)."""
    t = neuron.type if isinstance(neuron, dmm.Neuron) else neuron
    return {k: np.asarray(v) for k, v in t.fn({}, {k: jnp.asarray(v, jnp.float32) for k, v in inputs.items()},
                                              dmm.Context(1, None, None)).items()}


def test_vvalue_neurons_follow_their_formulas():
    x = np.array([1.5, -3.0, 0.5, 2.0], np.float32)  # a, b, ., :number
    y = np.array([2.0, 1.0, -1.0, 1.0], np.float32)
    e = np.zeros(4, np.float32)
    e[N] = 1
    assert V.labels == ("a", "b", ".", ":number")
    np.testing.assert_array_equal(one(neurons.v_norm(V), {"in": x})["out"], 3.0 * e)
    np.testing.assert_allclose(one(neurons.v_dot(V), {"x": x, "y": y})["out"], (3 - 3 - 0.5 + 2) * e)
    np.testing.assert_allclose(one(neurons.v_dot(V, clip=0.5), {"x": x, "y": y})["out"], 0.5 * e)
    np.testing.assert_allclose(one(neurons.v_dot(V, clip=0.5), {"x": -x, "y": y})["out"], -0.5 * e)
    c = one(neurons.v_compare(V), {"x": x, "y": y})
    np.testing.assert_array_equal(c["true"], 1.0 * e)
    np.testing.assert_array_equal(c["false"], 0 * e)
    c = one(neurons.v_compare(V), {"x": y, "y": x})
    np.testing.assert_array_equal(c["false"], 1.0 * e)
    np.testing.assert_array_equal(one(neurons.v_timer(V), {"in": x})["out"], x + e)
    t = neurons.v_text_input(V, "ab.", 2)
    for time, want in [(0, "a"), (1, None), (2, "b"), (4, "."), (8, ".")]:
        out = one(t, {"timer": time * e})["out"]
        np.testing.assert_array_equal(out, V.onehot(want) if want else np.zeros(4))
    with pytest.raises(dmm.ProgramError, match=":number"):
        neurons.v_norm(neurons.chars_kind("ab"))
    with pytest.raises(dmm.ProgramError, match="no labels"):
        neurons.v_text_input(V, "abc")


def test_student_has_1486_soft_and_12_hard_links():
    p = synthesis.synthesis_network()
    soft = [l for l in p.links if l.trainable]
    hard = [l for l in p.links if not l.trainable]
    assert len(soft) == 1486 == len(synthesis.soft_links())
    assert len(hard) == 12
    assert sum(1 for l in hard if l.src == l.dst.replace(".accum", ".out")) == 10
    m = dmm.compile(p)
    assert list(m.layout.kinds) == ["v"]  # one kind: the characters plus ":number"
    assert int(np.asarray(m.trainable["W"]["v"]).sum()) == 1486
    assert m.params["W"]["v"].shape == (74, 54)
    w = np.array([l.weight for l in soft])
    assert abs(w.std() - 0.01) < 0.001 and abs(w.mean()) < 0.001
    # no soft link enters an accumulator's first input, none goes backwards or within a layer
    assert not any(l.dst.endswith(".accum") for l in soft)
    layer = lambda s: 0 if "-" not in s.split(".")[0] else int(s.split("-")[1])
    assert all(layer(l.src) < (6 if l.dst.startswith("output") else layer(l.dst)) for l in soft)


def handcrafted_weights(m: dmm.Machine) -> dict:
    """The teacher's 8 soft links placed inside the student (everything else 0)."""
    links = [("input.out", "accum-1-1.delta"), ("accum-1-1.out", "norm-2-1.in"), ("norm-2-1.out", "compare-3-1.x"),
             ("const_1.out", "compare-3-1.y"), ("compare-3-1.true", "output.dict-1"), ("eos.out", "dot-2-1.x"),
             ("accum-1-1.out", "dot-2-1.y"), ("dot-2-1.out", "output.dict-2")]
    zero = {l: 0.0 for l in synthesis.soft_links()}
    return m.set_weights({**zero, **{l: 1.0 for l in links}})


@pytest.mark.parametrize("text", ["test string.", "tets. str.ingtb str.ingtb"])
def test_the_teacher_inside_the_student_has_zero_loss(text):
    m = dmm.compile(synthesis.synthesis_network(text))
    params = handcrafted_weights(m)
    targets = synthesis.teacher_targets(text, 140)
    tr = experiment.make_trainer(m, l1=0.0)
    st = tr.init(params)
    assert float(tr.evaluate(st, data=jnp.asarray(targets)).loss) == 0.0
    assert int(tr.evaluate(st, data=jnp.asarray(targets)).links) == 1486
    # and the same matrix on the long window through the generalization helper (teacher clipped like the student)
    rows = experiment.generalization(params, [(text, 140)])
    assert rows[0]["loss"] == 0.0 and rows[0]["max_error"] == 0.0


def test_teacher_targets_follow_the_detector_trace():
    t = synthesis.teacher_targets()
    assert t.shape == (140, 2)
    d1 = np.array([0] * 34 + [1] * 30 + [2] * 76)
    d2 = np.array([0] * 113 + [1] * 10 + [2] * 10 + [3] * 7)
    np.testing.assert_array_equal(t[:, 0], d1)
    np.testing.assert_array_equal(t[:, 1], d2)
    tr = dmm.compile(duplicate_detector()).run(150)
    np.testing.assert_array_equal(synthesis.teacher_targets(cycles=150)[:, 1], tr["output.dict-2"])


def test_a_few_training_steps_reduce_the_loss():
    m = dmm.compile(synthesis.synthesis_network())
    targets = jnp.asarray(synthesis.teacher_targets())
    tr = experiment.make_trainer(m)
    st = tr.init()
    first = float(tr.evaluate(st, data=targets).loss)
    # with weights 0.01·N(0, 1) the student's outputs are near 0: the loss is near Σ targets² = 447 (author: 435.0)
    assert 420 < first < 447
    st, hist = tr.fit(st, 15, data=targets, progress=False)
    assert hist["loss"][0] == pytest.approx(first, rel=1e-6)
    assert hist["loss"][-1] < 0.5 * first


def test_the_synthesis_command_runs_end_to_end(tmp_path, capsys):
    r = experiment.main(["--quick", "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"{len(r.links)} soft links" in out and "tets string." in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seed"] == r.seed and len(summary["links"]) == len(r.links) < 1486
    # the saved final program holds exactly the surviving soft links and reproduces the final loss
    final = dmm.files.load_program(tmp_path / "final")
    assert {(l.src, l.dst) for l in final.links if l.trainable and l.weight != 0} == set(r.links)
    m = dmm.compile(final)
    loss = experiment.make_trainer(m).evaluate(experiment.make_trainer(m).init(), data=jnp.asarray(synthesis.teacher_targets()))
    assert float(loss.loss) == pytest.approx(r.loss, rel=1e-4)
    cuts = [json.loads(l) for l in (tmp_path / "cuts.jsonl").read_text().splitlines()]
    assert cuts and all({"cut", "loss_before", "loss_cut", "loss_after", "accepted"} <= set(c) for c in cuts)
    assert (tmp_path / "dense-0.jsonl").exists() and (tmp_path / "sparse.npz").exists()
    # the three main stages (coarse at a looser limit, fine and search at the tolerance) come first in the log, the
    # ladder's looser rungs follow; every cut was accepted exactly when its recovered loss was within its limit
    main = cuts[: sum(len(st.attempts) for st in r.stages[:3])]
    assert len(cuts) == sum(len(st.attempts) for st in r.stages)
    assert all((c["loss_after"] <= c["limit"]) == c["accepted"] for c in main)
    assert {c["limit"] for c in main[len(r.stages[0].attempts):]} == {r.tolerance}
    assert all(c["limit"] > r.tolerance for c in main[: len(r.stages[0].attempts)])
    assert r.pareto[0] == (r.tolerance, len(r.links), r.loss)
