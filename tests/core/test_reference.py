"""Property tests: the compiled runtime (dense and sparse) equals the NumPy reference interpreter on random typed
programs (random neuron mixes over several kinds, random sparse W, Self-modifying programs, external inputs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import dmm
import neurons
from reference import as_array, run_reference


VEC = dmm.Kind("vec", (3,))
CHARS = dmm.Kind.keyed("chars", "ab.")
MAT = dmm.Kind("mat", (2, 2))
N = dmm.NETWORK

# (factory of a Neuron given a numpy rng) per choice; kinds chosen so that every kind gets producers and consumers.
CHOICES = {
    "identity_num": lambda r: neurons.identity(),
    "accum_num": lambda r: neurons.accumulator(),
    "timer": lambda r: neurons.timer(),
    "const_num": lambda r: neurons.const(r.uniform(-1, 1)),
    "external_num": lambda r: neurons.external(default=r.uniform(-1, 1)),
    "relu_num": lambda r: neurons.relu(),
    "tanh_num": lambda r: neurons.tanh(),
    "sigmoid_num": lambda r: neurons.sigmoid(),
    "mult_num": lambda r: neurons.mult(),
    "plus_num": lambda r: neurons.plus(),
    "max_num": lambda r: neurons.maximum(),
    "compare": lambda r: neurons.compare(),
    "sink_num": lambda r: neurons.sink(["a", "b"]),
    "accum_vec": lambda r: neurons.accumulator(VEC),
    "const_vec": lambda r: neurons.const(r.uniform(-1, 1, 3), VEC),
    "tanh_vec": lambda r: neurons.tanh(VEC),
    "mult_vec": lambda r: neurons.mult(VEC),
    "max_vec": lambda r: neurons.maximum(VEC),
    "dot_vec": lambda r: neurons.dot(VEC),
    "dot_vec_clip": lambda r: neurons.dot(VEC, clip=0.5),
    "norm_vec": lambda r: neurons.max_norm(VEC),
    "linear_vec_num": lambda r: neurons.linear(VEC, dmm.NUMBER, matrix=r.normal(size=(1, 3)), bias=r.normal(size=1)),
    "linear_num_vec": lambda r: neurons.linear(dmm.NUMBER, VEC, matrix=r.normal(size=(3, 1))),
    "text": lambda r: neurons.text_input("ab.a", every=int(r.integers(1, 3)), kind=CHARS),
    "accum_chars": lambda r: neurons.accumulator(CHARS),
    "norm_chars": lambda r: neurons.max_norm(CHARS),
    "identity_mat": lambda r: neurons.identity(MAT),
    "plus_mat": lambda r: neurons.plus(MAT),
    "relu_mat": lambda r: neurons.relu(MAT),
    "const_mat": lambda r: neurons.const(r.uniform(-1, 1, (2, 2)), MAT),
    "norm_mat": lambda r: neurons.max_norm(MAT),
}
NETWORK_CHOICES = ("accum_net", "plus_net", "mult_net", "max_net", "update", "edits")


@st.composite
def programs(draw, allow_self: bool = True):
    """A random program, its external inputs and a step count."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    names = draw(st.lists(st.sampled_from(sorted(CHOICES)), min_size=1, max_size=12))
    with_self = allow_self and draw(st.booleans())
    net_names = draw(st.lists(st.sampled_from(NETWORK_CHOICES), max_size=3)) if with_self else []
    steps = draw(st.integers(1, 6))

    p = dmm.Program()
    if with_self:
        neurons.add_self(p)
    for i, c in enumerate(names):
        p.add(f"n{i}", CHOICES[c](rng))
    simple_net = {"accum_net": neurons.accumulator(N), "plus_net": neurons.plus(N), "mult_net": neurons.mult(N),
                  "max_net": neurons.maximum(N)}
    for i, c in enumerate(net_names):
        if c in simple_net:
            p.add(f"m{i}", simple_net[c])
    # every potential (src, dst) pair of one kind, to draw links and matrix entries from
    outs = [s for s in p.streams() if not p.is_input(s)]
    ins = [s for s in p.streams() if p.is_input(s)]
    pairs = [(s, d) for s in outs for d in ins if p.port(s).kind == p.port(d).kind]
    for i, c in enumerate(net_names):  # matrix-valued sources address the ordinary ports
        if c == "update":
            k = min(len(pairs), 3)
            entries = {pairs[j]: float(rng.uniform(-0.5, 0.5)) for j in rng.choice(len(pairs), k, replace=False)} if k else {}
            p.add(f"m{i}", neurons.constant_matrix(entries))
        elif c == "edits" and pairs:
            events = {int(rng.integers(1, steps + 1)): {pairs[int(rng.integers(len(pairs)))]: float(rng.uniform(-1, 1))}}
            p.add(f"m{i}", neurons.edit_channel(events))
    outs = [s for s in p.streams() if not p.is_input(s)]
    ins = [s for s in p.streams() if p.is_input(s)]
    pairs = [(s, d) for s in outs for d in ins if p.port(s).kind == p.port(d).kind and (s, d) not in {(l.src, l.dst) for l in p.links}]
    if pairs:
        density = draw(st.floats(0.05, 0.6))
        for j in np.flatnonzero(rng.random(len(pairs)) < density):
            p.link(*pairs[j], float(rng.uniform(-1, 1)))
    inputs = {}
    for n, neuron in p.neurons.items():
        if neuron.type.name == "external" and rng.random() < 0.5:
            inputs[f"{n}.out"] = rng.uniform(-1, 1, steps)
    return p, inputs, steps


def bounded(ref: dict, limit: float = 1e150) -> bool:
    """Whether every reference value stays below `limit` (random programs can square their way to overflow; with an
    infinite output a dense product gives NaN where a loop over links does not, so such runs are not compared)."""
    return all(
        np.all(np.abs(list(v.values()) if isinstance(v, dict) else v) < limit) for vs in ref.values() for v in vs
    )


def limit_for(p: dmm.Program) -> float:
    """The value bound for comparing `p`: a text input reads its timer through ``t mod every == 0``, which flips when
    the two sums of one timer differ in their last bit at magnitudes where float64 spacing approaches 1 (seen at
    2.4e14: spacing 1/32); below 1e6 the spacing is 1e-10 and a tie is out of reach."""
    return 1e6 if any(n.type.name == "text_input" for n in p.neurons.values()) else 1e150


def check_against_reference(p: dmm.Program, inputs: dict, steps: int, backend: str, ref: dict | None = None) -> None:
    m = dmm.compile(p, backend=backend, dtype=jnp.float64)
    trace = m.run(steps, inputs=inputs, record="all")
    ref = run_reference(p, steps, inputs) if ref is None else ref
    for s in m.streams:
        want = np.stack([as_array(v, m) for v in ref[s]])
        np.testing.assert_allclose(trace[s], want, rtol=1e-10, atol=1e-10, err_msg=f"stream {s} ({backend})")


SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


@settings(max_examples=80, **SETTINGS)
@given(programs())
def test_runtime_equals_reference(case):
    """Random programs (80 in the default run; `test_runtime_equals_reference_long`, marked slow, draws 500)."""
    check_case(case)


@pytest.mark.slow
@settings(max_examples=500, **SETTINGS)
@given(programs())
def test_runtime_equals_reference_long(case):
    check_case(case)


def check_case(case):
    p, inputs, steps = case
    ref = run_reference(p, steps, inputs)
    assume(bounded(ref, limit_for(p)))
    with jax.enable_x64(True):
        check_against_reference(p, inputs, steps, "dense", ref)
        if not any(n.type.role == "self" for n in p.neurons.values()):
            check_against_reference(p, inputs, steps, "sparse", ref)


def test_detector_equals_reference():
    import programs as progs

    p = progs.duplicate_detector()
    with jax.enable_x64(True):
        check_against_reference(p, {}, 150, "dense")
        check_against_reference(p, {}, 150, "sparse")


@pytest.mark.parametrize("backend", ["dense", "sparse"])
def test_float32_run_matches_float64_reference(backend):
    """float32 (the default dtype) agrees with the float64 reference to float32 rounding."""
    rng = np.random.default_rng(0)
    p = dmm.Program()
    for i in range(6):
        p.add(f"a{i}", neurons.tanh(VEC))
        p.add(f"c{i}", neurons.const(rng.uniform(-1, 1, 3), VEC))
    for i in range(6):
        for j in range(6):
            p.link(f"a{j}.out", f"a{i}.in", float(rng.uniform(-0.6, 0.6)))
        p.link(f"c{i}.out", f"a{i}.in", 1.0)
    trace = dmm.compile(p, backend=backend).run(20)
    ref = run_reference(p, 20)
    for i in range(6):
        np.testing.assert_allclose(trace[f"a{i}.out"], np.stack(ref[f"a{i}.out"]), rtol=2e-5, atol=2e-6)
