"""Cost of self-modification: a 1,000-port network that rewrites its own matrix, against the same network with a
fixed W.

The network: 1,000 tanh neurons on streams of dimension 32 (1,000 input and 1,000 output ports of kind `vec`),
random dense W (N(0, 1/1000) entries), random initial outputs. The self-modifying version adds a Self neuron (a
`pinned_self`, so only the vec block changes) and a plasticity neuron that reads W through a reflection link and
feeds tanh(W) back into Self's delta with weight −0.01: every cycle W_c = W_{c−1} − 0.01·tanh(W_{c−2}) on the vec
block, so W (4 MB) is part of the scan carry. The fixed version has no Self: W is a constant parameter.

Measured, 100 cycles in one jitted `lax.scan`, loss = sum of squares of 10 recorded streams:
- forward time per cycle, self-modifying vs fixed W;
- gradient (d loss / d W_0) time per cycle, with and without nested (sqrt(T)) checkpointing;
- XLA temporary memory of the compiled gradient (`memory_analysis().temp_size_in_bytes`), with and without nested
  checkpointing, and for the fixed network.
The ratio printed last is the gradient's temp memory without / with nested checkpointing.

    python benchmarks/self_modifying.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dmm  # noqa: E402
import neurons  # noqa: E402
from common import best_time, machine_line  # noqa: E402


N, D, T = 1000, 32, 100
RECORD = tuple(f"n{i}.out" for i in range(10))


def build(self_modifying: bool) -> tuple[dmm.Machine, dmm.Params]:
    """The compiled machine and its parameters (the dense random vec block is set in the parameters directly:
    a million `Program.link` calls would only measure Python)."""
    vec = dmm.Kind("vec", (D,))
    rng = np.random.default_rng(0)
    p = dmm.Program()
    for i in range(N):
        p.add(f"n{i}", neurons.tanh(vec), initial={"out": rng.normal(size=D)})
    w = rng.normal(scale=1 / np.sqrt(N), size=(N, N))
    if self_modifying:
        p.add("self", neurons.pinned_self(("self.accum", "self.delta", "plastic.in")))
        p.link("self.out", "self.accum", 1.0, trainable=False)
        p.add("plastic", neurons.tanh(dmm.NETWORK))
        p.link("self.out", "plastic.in", 1.0, trainable=False)
        p.link("plastic.out", "self.delta", -0.01, trainable=False)
    m = dmm.compile(p)
    return m, {**m.params, "W": {**m.params["W"], "vec": jnp.asarray(w, m.dtype)}}


def loss_fn(m: dmm.Machine, remat: str):
    def loss(params):
        _, rec, _ = m.simulate(params, None, {}, None, steps=T, record=RECORD, remat=remat)
        return sum(jnp.sum(rec[s] ** 2) for s in RECORD)

    return loss


def temp_bytes(fn, *args) -> int:
    return int(jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes)


def main() -> None:
    print(f"# self-modifying network, {N} ports of dimension {D}, {T} cycles ({machine_line()})")
    machines, params = {}, {}
    for name, sm in (("fixed W", False), ("self-modifying", True)):
        machines[name], params[name] = build(sm)
    fixed, selfm = machines["fixed W"], machines["self-modifying"]
    print(f"network value of the self-modifying machine: {selfm.network.kind.shape[0]:,} floats "
          f"({selfm.network.kind.shape[0] * 4 / 2**20:.1f} MiB)")

    # the two machines compute the same thing while the plasticity is off
    no_plastic = selfm.set_weights({("plastic.out", "self.delta"): 0.0}, params["self-modifying"])
    a = fixed.run(5, params=params["fixed W"], record=list(RECORD))
    b = selfm.run(5, params=no_plastic, record=list(RECORD))
    err = max(float(np.max(np.abs(a[s] - b[s]))) for s in RECORD)
    print(f"check: self-modifying machine with plasticity off vs fixed W, max |difference| = {err:.2e}")

    rows = []
    fwd = {}
    for name, m in machines.items():
        f = jax.jit(lambda p, m=m: m.simulate(p, None, {}, None, steps=T, record=RECORD, remat="none")[1])
        jax.block_until_ready(f(params[name]))
        fwd[name] = best_time(lambda f=f, name=name: f(params[name]), repeat=5) / T
        rows.append((name, "forward", "-", fwd[name], None))
    grads = {}
    mem = {}
    for name, m, remats in (("fixed W", fixed, ("none",)), ("self-modifying", selfm, ("none", "nested"))):
        for remat in remats:
            g = jax.jit(jax.grad(loss_fn(m, remat)))
            jax.block_until_ready(g(params[name]))
            grads[(name, remat)] = best_time(lambda g=g, name=name: g(params[name]), repeat=3) / T
            mem[(name, remat)] = temp_bytes(jax.grad(loss_fn(m, remat)), params[name])
            rows.append((name, "gradient", remat, grads[(name, remat)], mem[(name, remat)]))

    print(f"{'network':<16} {'run':<9} {'remat':<7} {'ms / cycle':>11} {'XLA temp MiB':>13}")
    for name, run, remat, t, b in rows:
        print(f"{name:<16} {run:<9} {remat:<7} {t * 1e3:>11.3f} {'' if b is None else f'{b / 2**20:.1f}':>13}")
    print(f"ratio forward time self-modifying / fixed W = {fwd['self-modifying'] / fwd['fixed W']:.2f}")
    print(f"ratio gradient time self-modifying (nested) / fixed W = "
          f"{grads[('self-modifying', 'nested')] / grads[('fixed W', 'none')]:.2f}")
    print(f"ratio gradient time nested / none (self-modifying) = "
          f"{grads[('self-modifying', 'nested')] / grads[('self-modifying', 'none')]:.2f}")
    print(f"ratio gradient temp memory none / nested (self-modifying) = "
          f"{mem[('self-modifying', 'none')] / mem[('self-modifying', 'nested')]:.2f}")


if __name__ == "__main__":
    main()
