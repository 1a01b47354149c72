"""Program building and validation: every rule raises a dmm error naming what is wrong, when the program is built."""

from __future__ import annotations

import numpy as np
import pytest

import dmm
import neurons
from helpers import counter


VEC = dmm.Kind("vec", (3,))


def test_errors_are_value_errors():
    assert issubclass(dmm.ProgramError, ValueError) and issubclass(dmm.FileFormatError, dmm.DMMError)
    assert issubclass(dmm.UnknownStreamError, dmm.DMMError)


@pytest.mark.parametrize(
    "src, dst, message",
    [
        ("nope.out", "cnt.accum", "unknown neuron 'nope'"),
        ("cnt.out", "nope.in", "unknown neuron 'nope'"),
        ("cnt.bogus", "cnt.accum", "has no port 'bogus'"),
        ("cnt.out", "cnt.bogus", "has no port 'bogus'"),
        ("cnt.delta", "cnt.accum", "the source 'cnt.delta' is an input port"),
        ("cnt.out", "one.out", "the target 'one.out' is an output port"),
        ("cnt", "cnt.accum", "not a stream name"),
        ("a.b.c", "cnt.accum", "not a stream name"),
    ],
)
def test_bad_links(src, dst, message):
    p = counter()
    with pytest.raises(dmm.DMMError, match=message.replace("(", r"\(")):
        p.link(src, dst, 1.0)


def test_cross_kind_link_names_both_kinds():
    p = counter()
    p.add("v", neurons.identity(VEC))
    with pytest.raises(dmm.ProgramError, match=r"'cnt.out' -> 'v.in' joins kind 'number' to kind 'vec'"):
        p.link("cnt.out", "v.in")


@pytest.mark.parametrize("w", [float("nan"), float("inf"), "heavy", None])
def test_bad_weights(w):
    p = counter()
    p.add("id", neurons.identity())
    with pytest.raises(dmm.ProgramError, match="'cnt.out' -> 'id.in'"):
        p.link("cnt.out", "id.in", w)


def test_duplicate_link_and_set_weight():
    p = counter()
    with pytest.raises(dmm.ProgramError, match="duplicate link 'cnt.out' -> 'cnt.accum'"):
        p.link("cnt.out", "cnt.accum", 2.0)
    p.set_weight("cnt.out", "cnt.accum", 0.5)
    assert p.links[0].weight == 0.5
    with pytest.raises(dmm.ProgramError, match="no link 'one.out' -> 'cnt.accum'"):
        p.set_weight("one.out", "cnt.accum", 1.0)


@pytest.mark.parametrize("name", ["cnt", "", "a.b", " x", 3])
def test_bad_or_duplicate_neuron_names(name):
    p = counter()
    with pytest.raises(dmm.ProgramError, match="neuron name"):
        p.add(name, neurons.identity())


def test_kind_name_clash():
    p = counter()
    with pytest.raises(dmm.ProgramError, match="kind .*'number'"):
        p.add("v", neurons.identity(dmm.Kind("number", (2,))))
    assert "v" not in p.neurons


def test_initial_values():
    p = counter()
    p.set_initial("cnt.out", 5.0)
    with pytest.raises(dmm.ProgramError, match=r"initial value of 'cnt.out' has shape \(3,\)"):
        p.set_initial("cnt.out", [1.0, 2.0, 3.0])
    with pytest.raises(dmm.ProgramError, match="'cnt.accum' is an input port"):
        p.set_initial("cnt.accum", 1.0)
    with pytest.raises(dmm.ProgramError, match="not finite"):
        p.set_initial("cnt.out", np.nan)
    with pytest.raises(dmm.ProgramError, match="not numeric"):
        p.set_initial("cnt.out", "x")
    with pytest.raises(dmm.ProgramError, match="has shape"):
        p.add("v", neurons.identity(VEC), initial={"out": 1.0})
    assert "v" not in p.neurons  # a failed add leaves the program as it was
    assert dmm.compile(p).run(2)["cnt.out"].tolist() == [5.0, 6.0]


def test_bad_parameters_and_configs():
    with pytest.raises(dmm.ProgramError, match="parameter 'value' must have shape"):
        neurons.const([1.0, 2.0], VEC)
    with pytest.raises(dmm.ProgramError, match="needs an explicit kind"):
        neurons.const([1.0, 2.0])
    with pytest.raises(dmm.ProgramError, match="not finite"):
        neurons.const(np.inf)
    with pytest.raises(dmm.ProgramError, match="neuron type 'dot'"):
        neurons.dot(VEC, clip=float("nan"))
    with pytest.raises(dmm.ProgramError, match="no labels for characters"):
        neurons.text_input("xyz", kind=dmm.Kind.keyed("chars", "xy"))
    with pytest.raises(dmm.ProgramError, match="unexpected keyword"):
        neurons.accumulator(kinds=VEC)


def test_kinds_validate():
    with pytest.raises(dmm.ProgramError, match="at least 1"):
        dmm.Kind("k", (0,))
    with pytest.raises(dmm.ProgramError, match="one label per coordinate"):
        dmm.Kind("k", (2,), keys=("a",))
    with pytest.raises(dmm.ProgramError, match="duplicate labels"):
        dmm.Kind.keyed("k", "aa")
    with pytest.raises(dmm.ProgramError, match="only the NETWORK kind"):
        dmm.Kind("k", None)
    k = dmm.Kind.keyed("k", ["a", ("b", ":number")])
    assert k == dmm.Kind("k", (2,), keys=(("a",), ("b", ":number"))) and k.labels == ("a", "b/:number")
    assert k.onehot("b/:number".split("/")).tolist() == [0.0, 1.0]


def test_one_self_neuron_only():
    p = dmm.Program()
    neurons.add_self(p)
    with pytest.raises(dmm.ProgramError, match="at most one Self neuron"):
        p.add("self2", neurons.self_matrix())
    with pytest.raises(dmm.ProgramError, match="Self neuron's output"):
        p.set_initial("self.out", {("self.out", "self.accum"): 1.0})


def test_neuron_types_compare_by_name_and_config():
    assert neurons.accumulator() == neurons.accumulator(dmm.NUMBER)
    assert neurons.accumulator(VEC) != neurons.accumulator()
    assert hash(neurons.dot(VEC)) == hash(neurons.dot(VEC, None))
    assert "y.out = x.accum + x.delta" in neurons.accumulator().doc


def test_port_names_share_one_namespace():
    @dmm.neuron_type("test.clash")
    def clash():
        return dmm.make_type({"x": dmm.NUMBER}, {"x": dmm.NUMBER}, fn=lambda p, x, c: {"x": x["x"]})

    with pytest.raises(dmm.ProgramError, match=r"port names \['x'\] repeat"):
        clash()


def test_copy_is_independent_and_equal():
    p = counter()
    q = p.copy()
    assert q == p
    q.add("extra", neurons.identity())
    assert q != p and "extra" not in p.neurons


def test_link_many_equals_one_link_at_a_time_and_refuses_like_link():
    rng = np.random.default_rng(0)
    vec = dmm.Kind("vec", (2,))

    def base():
        p = dmm.Program()
        for i in range(6):
            p.add(f"n{i}", neurons.tanh())
        p.add("v", neurons.tanh(vec))
        return p

    src = [f"n{j}.out" for j in range(6) for _ in range(6)]
    dst = [f"n{i}.in" for _ in range(6) for i in range(6)]
    w = rng.normal(size=36)
    train = rng.random(36) < 0.5
    one, many = base(), base()
    for s, d, x, t in zip(src, dst, w, train):
        one.link(s, d, float(x), trainable=bool(t))
    many.link_many(src, dst, w, trainable=train)
    assert many == one and many.links == one.links
    np.testing.assert_array_equal(dmm.compile(many).params["W"]["number"], dmm.compile(one).params["W"]["number"])
    cases = [
        (["n0.out"], ["n1.in", "n2.in"], 1.0, "1 sources but 2 targets"),
        (["n0.out", "n1.out"], ["n1.in", "n2.in"], [1.0, np.nan], r"link 'n1.out' -> 'n2.in': weight nan is not finite"),
        (["n0.in"], ["n1.in"], 1.0, "the source 'n0.in' is an input port"),
        (["n0.out"], ["n1.out"], 1.0, "the target 'n1.out' is an output port"),
        (["n0.out"], ["v.in"], 1.0, "joins kind 'number' to kind 'vec'"),
        (["n0.out", "n0.out"], ["n5.in", "n5.in"], 1.0, "duplicate link 'n0.out' -> 'n5.in'"),
        (["n0.out"], ["n0.in"], 1.0, "duplicate link 'n0.out' -> 'n0.in'"),  # made above
        (["n0.out"], ["nobody.in"], 1.0, "unknown neuron 'nobody'"),
    ]
    for s, d, x, message in cases:
        before = many.links
        with pytest.raises(dmm.DMMError, match=message):
            many.link_many(s, d, x)
        assert many.links == before  # nothing added
    with pytest.raises(dmm.ProgramError, match="trainable must be bools"):
        many.link_many(["v.out"], ["v.in"], trainable=[0.5])


def test_link_many_builds_a_million_links_without_a_python_object_per_link():
    p = dmm.Program()
    t = neurons.tanh()
    for i in range(1000):
        p.add(f"n{i}", t)
    src = [f"n{j}.out" for j in range(1000) for _ in range(1000)]
    dst = [f"n{i}.in" for _ in range(1000) for i in range(1000)]
    p.link_many(src, dst, 0.5)
    pairs, w, train = p.link_columns()
    assert len(pairs) == 10**6 and w.shape == (10**6,) and bool(train.all()) and pairs[1001] == ("n1.out", "n1.in")
