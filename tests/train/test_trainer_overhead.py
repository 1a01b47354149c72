"""The Trainer's step against a hand-written ``jax.value_and_grad`` over `Machine.simulate` (same loss, optimizer
and mask), and the shape of the backward scan: a cycle reads its groups' inputs as the pieces of one split of
X_K, so the gradient assembles X_K's cotangent by concatenation, with no zero-padded copy of X_K per input port."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import dmm
import dmm.train
import neurons

VEC = dmm.Kind("vec", (3,))


def network(seed: int = 0) -> dmm.Program:
    """Four neuron types with seven input ports in all (one group each), an external source, a sink, random
    trainable links."""
    rng = np.random.default_rng(seed)
    p = dmm.Program()
    p.add("x", neurons.external(VEC))
    for name, maker in (("acc", neurons.accumulator), ("t", neurons.tanh), ("m", neurons.mult), ("s", neurons.plus)):
        for i in range(2):
            p.add(f"{name}{i}", maker(VEC))
    p.add("out", neurons.sink({"y": VEC}))
    outs = [s for s in p.streams() if not p.is_input(s)]
    for d in [s for s in p.streams() if p.is_input(s)]:
        for j in rng.choice(len(outs), 3, replace=False):
            p.link(outs[j], d, float(rng.normal(scale=0.6)))
    return p


def loss(trace: dmm.Trace, target: jax.Array) -> jax.Array:
    return jnp.mean((trace["out.y"] - target) ** 2)


def batch(steps: int, n: int = 3) -> tuple[dict[str, jax.Array], jax.Array]:
    rng = np.random.default_rng(1)
    inputs = {"x.out": jnp.asarray(rng.normal(size=(n, steps, 3)), jnp.float32)}
    return inputs, jnp.asarray(rng.normal(size=(n, steps, 3)), jnp.float32)


def test_trainer_step_equals_a_hand_written_value_and_grad():
    m, steps = dmm.compile(network()), 6
    inputs, target = batch(steps)
    opt = optax.adam(1e-2)
    trainer = dmm.train.Trainer(m, loss, opt, steps=steps, record=["out.y"], batched=True, guard=True)
    state = trainer.init()

    def objective(p):
        def one(x, t):
            final, recs, _ = m.simulate(p, None, x, None, steps=steps, record=("out.y",))
            return loss(dmm.Trace(recs, {"out.y": m.kind("out.y")}, 0, final), t)

        return jnp.mean(jax.vmap(one)(inputs, target))

    mask = m.trainable

    @jax.jit
    def hand(params, opt_state):
        value, g = jax.value_and_grad(objective)(params)
        g = jax.tree_util.tree_map(lambda x, k: jnp.where(k, x, 0.0), g, mask)
        with jax.numpy_dtype_promotion("standard"):
            u, opt_state = opt.update(g, opt_state, params)
        u = jax.tree_util.tree_map(lambda x, k: jnp.where(k, x, 0.0), u, mask)
        return optax.apply_updates(params, u), opt_state, value

    params, opt_state = m.params, opt.init(m.params)
    for _ in range(3):
        state, metrics = trainer.update(state, inputs, target)
        params, opt_state, value = hand(params, opt_state)
        np.testing.assert_allclose(float(metrics.loss), float(value), rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def _primitives(jaxpr, out: list) -> list:
    for e in jaxpr.eqns:
        out.append(e)
        for v in e.params.values():
            for sub in v if isinstance(v, (tuple, list)) else (v,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    _primitives(inner, out)
    return out


def test_backward_pass_has_no_padded_copy_of_the_inputs_per_port():
    m, steps = dmm.compile(network()), 4
    inputs, target = batch(steps)
    trainer = dmm.train.Trainer(m, loss, optax.sgd(0.1), steps=steps, record=["out.y"], batched=True, guard=False)
    state = trainer.init()
    jaxpr = jax.make_jaxpr(lambda s, i, d: trainer.train_step(s, i, d, horizon=steps))(state, inputs, target)
    eqns = _primitives(jaxpr.jaxpr, [])
    rows = len(m.layout.rows["vec"])
    assert rows not in (3, 4)  # so that a dimension of size `rows` is X's rows, not the batch, value or steps
    x_shaped = [e for e in eqns if e.primitive.name == "pad" and rows in e.outvars[0].aval.shape]
    assert not x_shaped, f"{len(x_shaped)} pads to X's rows: the ports' cotangents are summed, not concatenated"
