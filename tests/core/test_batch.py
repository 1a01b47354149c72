"""Batches of machines (`dmm.run_batch`): every instance equals its own `Machine.run`, a closed form where there is
one, and the batch sharded over 2 or 4 (forced CPU) devices equals the single-device batch exactly."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmm
import dmm.files
import neurons
import programs
from helpers import counter


def leaky_counter() -> dmm.Program:
    """one (const 1) -> acc.delta; acc.out -> acc.accum with weight w: acc_c = sum_{k=0}^{c-2} w^k."""
    return counter("one", "acc")


def driven() -> dmm.Program:
    """src (external input) -> acc.delta; acc.out -> acc.accum with weight 0.5."""
    return counter("src", "acc", keep=0.5)


@dmm.neuron_type("test_batch_noise")
def noise_type():
    """y.out = x.in + N(0, 1) noise from the neuron's key (a stochastic type for these tests)."""
    return dmm.make_type({"in": dmm.NUMBER}, {"out": dmm.NUMBER},
                         fn=lambda p, x, ctx: {"out": x["in"] + jax.random.normal(ctx.key)}, stochastic=True)


def test_batched_weights_follow_the_closed_form():
    m = dmm.compile(leaky_counter())
    ws = [1.0, 0.9, 0.5, 0.0]
    params = dmm.stack_trees([m.set_weights({("acc.out", "acc.accum"): w}) for w in ws])
    batch = dmm.run_batch(m, 20, params=params)
    assert batch.size == 4 and batch.steps == 20 and batch["acc.out"].shape == (4, 20)
    c = np.arange(1, 21)
    for b, w in enumerate(ws):
        expected = np.array([sum(w**k for k in range(ci - 1)) for ci in c])
        np.testing.assert_allclose(batch["acc.out"][b], expected, rtol=1e-6)


def test_every_instance_equals_its_own_run():
    m = dmm.compile(programs.duplicate_detector())
    ws = (1.0, 0.9, 0.5)
    params = dmm.stack_trees([m.set_weights({("accum.out", "accum.accum"): w}) for w in ws])
    batch = dmm.run_batch(m, 150, params=params, record="all")
    for b, w in enumerate(ws):
        alone = m.run(150, params=m.set_weights({("accum.out", "accum.accum"): w}), record="all")
        assert batch.names == alone.names
        for s in alone.names:
            np.testing.assert_array_equal(batch[s][b], alone[s], err_msg=s)
    # the unchanged instance reproduces the canonical trace (docs/semantics.md §6.1)
    d1 = batch["output.dict-1"][0]
    assert [int(np.argmax(d1 >= v)) + 1 for v in (1, 2, 3)] == [35, 65, 145]


def test_batched_inputs_with_shared_params_and_a_batched_state():
    m = dmm.compile(driven())
    xs = np.random.default_rng(0).normal(size=(5, 30)).astype(np.float32)
    batch = dmm.run_batch(m, 30, inputs={"src.out": xs})
    for b in range(5):
        np.testing.assert_array_equal(batch["acc.out"][b], m.run(30, inputs={"src.out": xs[b]})["acc.out"])
    # continuing every instance from the batch's final state equals one longer run per instance
    more = np.random.default_rng(1).normal(size=(5, 10)).astype(np.float32)
    cont = dmm.run_batch(m, 10, state=batch.state, inputs={"src.out": more})
    np.testing.assert_array_equal(cont.first_cycle, [30] * 5)
    for b in range(5):
        whole = m.run(40, inputs={"src.out": np.concatenate([xs[b], more[b]])})
        np.testing.assert_array_equal(cont["acc.out"][b], whole["acc.out"][30:])
        tr = cont.instance(b)
        assert tr.first_cycle == 30 and list(tr.cycles[:2]) == [31, 32]


def test_per_leaf_batching_and_batched_keys():
    p = dmm.Program()
    p.add("one", neurons.const(1.0))
    p.add("noisy", noise_type())
    p.add("acc", neurons.accumulator())
    p.link("one.out", "noisy.in")
    p.link("noisy.out", "acc.delta")
    p.link("acc.out", "acc.accum")
    m = dmm.compile(p)
    keys = jax.random.split(jax.random.key(7), 3)
    batch = dmm.run_batch(m, 12, key=keys)  # shared params, one key per instance
    for b in range(3):
        np.testing.assert_array_equal(batch["acc.out"][b], m.run(12, key=keys[b])["acc.out"])
    assert not np.array_equal(batch["acc.out"][0], batch["acc.out"][1])
    # only W batched, the neuron parameters (the constant) shared; raw uint32 keys work too
    W = jnp.stack([m.params["W"]["number"] * s for s in (1.0, 2.0)])
    raw = jax.random.key_data(jax.random.split(jax.random.key(3), 2))
    batch = dmm.run_batch(m, 6, params={"W": {"number": W}, "neurons": m.params["neurons"]}, key=raw)
    for b, s in enumerate((1.0, 2.0)):
        alone = m.run(6, params={"W": {"number": W[b]}, "neurons": m.params["neurons"]}, key=jax.random.wrap_key_data(raw[b]))
        np.testing.assert_array_equal(batch["acc.out"][b], alone["acc.out"])


def test_gradient_through_a_batch_sums_the_instances():
    m = dmm.compile(driven())
    xs = np.random.default_rng(2).normal(size=(4, 15)).astype(np.float32)

    def batch_loss(params):
        return (dmm.run_batch(m, 15, params=params, inputs={"src.out": xs})["acc.out"] ** 2).sum()

    g = jax.grad(batch_loss)(m.params)["W"]["number"]
    each = sum(jax.grad(lambda P: (m.run(15, params=P, inputs={"src.out": x})["acc.out"] ** 2).sum())(m.params)["W"]["number"] for x in xs)
    np.testing.assert_allclose(g, each, rtol=1e-5)


def test_a_batch_instance_saves_and_loads_as_a_trace(tmp_path):
    m = dmm.compile(leaky_counter())
    batch = dmm.run_batch(m, 5, params=dmm.stack_trees([m.params, m.set_weights({("acc.out", "acc.accum"): 0.5})]))
    dmm.files.save_trace(batch.instance(1), tmp_path / "b1.npz")
    back = dmm.files.load_trace(str(tmp_path / "b1.npz"))
    np.testing.assert_array_equal(back["acc.out"], batch["acc.out"][1])
    assert repr(batch).startswith("BatchTrace(2 instances x 5 cycles")


def test_bad_batches_are_named():
    m = dmm.compile(driven())
    with pytest.raises(dmm.ProgramError, match="nothing is batched"):
        dmm.run_batch(m, 5)
    with pytest.raises(dmm.ProgramError, match="disagree on the batch size"):
        dmm.run_batch(m, 5, inputs={"src.out": np.zeros((3, 5))}, key=jax.random.split(jax.random.key(0), 2))
    with pytest.raises(dmm.ProgramError, match=r"inputs\['src.out'\] has shape \(3, 4\)"):
        dmm.run_batch(m, 5, inputs={"src.out": np.zeros((3, 4))})
    with pytest.raises(dmm.ProgramError, match=r"params\['W'\]\['number'\] has shape"):
        dmm.run_batch(m, 5, params={"W": {"number": np.zeros((2, 3, 3))}, "neurons": m.params["neurons"]})
    with pytest.raises(dmm.ProgramError, match="is an input port"):
        dmm.run_batch(m, 5, inputs={"acc.delta": np.zeros((2, 5))})
    with pytest.raises(dmm.ProgramError, match="devices=9"):
        dmm.run_batch(m, 5, inputs={"src.out": np.zeros((2, 5))}, devices=9)
    with pytest.raises(dmm.ProgramError, match="steps"):
        dmm.run_batch(m, -1, inputs={"src.out": np.zeros((2, 5))})
    with pytest.raises(dmm.ProgramError, match="different structure"):
        dmm.stack_trees([{"a": 1}, {"b": 1}])


SHARDED = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    import dmm, neurons, programs

    rng = np.random.default_rng(0)
    K = dmm.Kind("vec", (8,))
    p = dmm.Program()
    for i in range(10):
        p.add(f"n{i}", neurons.tanh(K))
    p.add("src", neurons.external(K))
    for i in range(10):
        for j in range(10):
            if rng.random() < 0.3:
                p.link(f"n{j}.out", f"n{i}.in", float(rng.normal() / 3))
        p.link("src.out", f"n{i}.in", float(rng.normal()))
    m = dmm.compile(p)
    out = {"devices": len(jax.devices())}
    for B, counts in ((8, (1, 2, 4)), (6, (1, 4))):  # 6 does not divide by 4: the batch is padded, then cut back
        xs = rng.normal(size=(B, 30, 8)).astype(np.float32)
        ps = dmm.stack_trees([jax.tree.map(lambda a: a * (1 + 0.1 * b), m.params) for b in range(B)])
        runs = {n: dmm.run_batch(m, 30, params=ps, inputs={"src.out": xs}, devices=n, record="all") for n in counts}
        out[f"equal{B}"] = [all(np.array_equal(runs[1][s], runs[n][s]) for s in runs[1].names)
                            and np.array_equal(runs[1].state.outputs["vec"], runs[n].state.outputs["vec"]) for n in counts[1:]]
        alone = m.run(30, params=jax.tree.map(lambda a: a[B - 1], ps), inputs={"src.out": xs[B - 1]}, record="all")
        out[f"alone{B}"] = all(np.array_equal(runs[4][s][B - 1], alone[s]) for s in alone.names)
        out[f"spec{B}"] = list(runs[4].state.outputs["vec"].sharding.spec)
    print(json.dumps(out))
    """
)


def test_sharded_batch_equals_the_single_device_batch_on_4_cpu_devices():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    assert out["equal8"] == [True, True] and out["equal6"] == [True]
    assert out["alone8"] and out["alone6"]
    assert out["spec8"] == ["batch"]  # the result stays sharded over the batch axis


MULTIPROCESS = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    import numpy as np, dmm, neurons
    p = dmm.Program()
    p.add("src", neurons.external())
    p.add("acc", neurons.accumulator())
    p.link("acc.out", "acc.accum", 0.5)
    p.link("src.out", "acc.delta")
    m = dmm.compile(p)
    xs = np.random.default_rng(0).normal(size=(6, 20)).astype(np.float32)
    batch = dmm.run_batch(m, 20, inputs={"src.out": xs})
    ok = all(np.array_equal(batch["acc.out"][b], m.run(20, inputs={"src.out": xs[b]})["acc.out"]) for b in range(6))
    print(json.dumps({"process": jax.process_index(), "devices": len(jax.devices()), "ok": ok}))
    """
)


@pytest.mark.slow
def test_batch_across_two_processes_with_jax_distributed():
    """docs/scaling.md's claim: with jax.distributed the same call shards over every process's devices and each
    process gets the whole result."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", MULTIPROCESS, f"localhost:{port}", str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["devices"] == 4 and result["ok"]


def test_a_machine_is_freed_after_run_batch():
    """Compiled batch code lives with its machine (`Machine.jitted`), not in a module-level cache keyed by it."""
    import gc
    import weakref

    m = dmm.compile(leaky_counter())
    batch = dmm.run_batch(m, 4, params=dmm.stack_trees([m.params, m.params]))
    np.testing.assert_array_equal(batch["acc.out"][0], m.run(4)["acc.out"])
    ref = weakref.ref(m)
    del m, batch
    gc.collect()
    assert ref() is None
