"""Data-parallel training (`Trainer(..., devices=...)`): in a subprocess with two host (CPU) devices, sharded
training from a batch function and from host batches equals unsharded training, the batch axis is split over both
devices, and a batch size the devices do not divide is a `ProgramError`."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import ROOT

SCRIPT = r"""
import jax, jax.numpy as jnp, numpy as np, optax
jax.config.update("jax_numpy_dtype_promotion", "strict")
import dmm, dmm.train, neurons

devices = jax.devices()
assert len(devices) == 2 and devices[0].platform == "cpu", devices
B, T = 4, 4
p = dmm.Program()
p.add("src", neurons.external())
p.add("acc", neurons.accumulator())
p.add("out", neurons.sink(["y"]))
p.link("acc.out", "acc.accum", 0.5)
p.link("src.out", "acc.delta", 1.0)
p.link("acc.out", "out.y", 1.0)
m = dmm.compile(p)
loss = lambda t, d: jnp.mean((t["out.y"] - d) ** 2)
err = lambda t, d: jnp.mean(jnp.abs(t["out.y"] - d))
make = lambda **kw: dmm.train.Trainer(m, loss, optax.adam(3e-2), T, record=["out.y"], batched=True,
                                      metrics={"err": err}, **kw)
plain, shard = make(), make(devices=devices)
assert shard.mesh.devices.size == 2 and plain.mesh is None
rng = np.random.default_rng(0)
xs = rng.normal(size=(5, B, T)).astype(np.float32)
batches = [({"src.out": x}, np.cumsum(x, axis=1)) for x in xs]

def draw(key, step):
    x = jax.random.normal(key, (B, T))
    return {"src.out": x}, jnp.cumsum(x, axis=1)

def close(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=1e-6)

# a batch function (its batches constrained to the mesh inside the jitted scan), with held-out evaluation
kw = dict(batches=dmm.train.BatchFn(draw), chunk=2, eval_every=2, eval_batch=batches[-1], progress=False)
a, ha = plain.fit(plain.init(), 4, **kw)
b, hb = shard.fit(shard.init(), 4, **kw)
assert set(ha) == set(hb) and hb["eval_step"].tolist() == [2, 4]
close(ha, hb)
close(a.params, b.params)
assert len(b.params["W"]["number"].sharding.device_set) == 2  # replicated on both
# host batches (placed on the mesh by the trainer), step by step
a, b = plain.init(), shard.init()
for i, d in batches[:3]:
    a, ma = plain.update(a, i, d)
    b, mb = shard.update(b, i, d)
    close((a.params, ma), (b.params, mb))
# the batch axis is split: each device holds half of it
i, d = shard.shard_batch(*batches[0])
assert i["src.out"].sharding.device_set == set(devices) and d.sharding.device_set == set(devices)
assert {s.data.shape for s in i["src.out"].addressable_shards} == {(B // 2, T)}
gen, _ = shard.jitted(dmm.train.loop.draw, static_argnames=("batches", "horizon"))(
    shard.init(), batches=dmm.train.BatchFn(draw), horizon=T)
assert {s.data.shape for s in gen["src.out"].addressable_shards} == {(B // 2, T)}
# the devices must divide the batch size
odd = ({"src.out": xs[0, :3]}, np.cumsum(xs[0, :3], axis=1))
for call in (lambda: shard.update(shard.init(), *odd), lambda: shard.fit(shard.init(), 2, batches=[odd] * 2, chunk=2),
             lambda: shard.fit(shard.init(), 1, batches=lambda k, s: draw(k, s) if False else odd, progress=False)):
    try:
        call()
    except dmm.ProgramError as e:
        assert "not divisible by the 2 devices" in str(e), e
    else:
        raise AssertionError("an indivisible batch was accepted")
print("SHARDED OK")
"""


def test_sharded_training_equals_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "SHARDED OK" in run.stdout
