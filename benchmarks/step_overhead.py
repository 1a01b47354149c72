"""Per-cycle overhead of the runtime against a hand-written jitted JAX cycle.

A 1,000-neuron dense network with streams of dimension 32 over 4 types (accumulator, tanh, mult, plus; 250 each;
random W with 10 % of the entries set), 200 cycles in one `lax.scan`, recording one stream. The hand-written
version computes the same cycle directly: X = W @ Y, then each type's formula on its static slice of X, outputs
concatenated. Both results are checked equal. Prints the time per cycle of each and the ratio runtime /
hand-written last (goal: at most 1.25).

    python benchmarks/step_overhead.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import dmm
import neurons
from common import best_time, machine_line


N, D, T = 1000, 32, 200


def build() -> tuple[dmm.Program, np.random.Generator]:
    vec = dmm.Kind("vec", (D,))
    rng = np.random.default_rng(0)
    makers = [neurons.accumulator(vec), neurons.tanh(vec), neurons.mult(vec), neurons.plus(vec)]
    p = dmm.Program()
    for t in range(4):
        for i in range(N // 4):
            p.add(f"t{t}_{i}", makers[t])
    ins = [s for s in p.streams() if p.is_input(s)]
    outs = [s for s in p.streams() if not p.is_input(s)]
    for d in ins:
        for s in rng.choice(len(outs), N // 10, replace=False):
            p.link(outs[s], d, float(rng.normal(scale=0.05)))
    for i in range(N // 4):
        p.set_initial(f"t1_{i}.out", rng.normal(size=D))
    return p


def main() -> None:
    print(f"# step overhead ({machine_line()})")
    p = build()
    m = dmm.compile(p)
    lay = m.layout
    W = m.params["W"]["vec"]
    y0 = m.init_state().outputs["vec"]
    q = N // 4
    rec = lay.cols["vec"].index("t1_0.out")

    # The hand-written cycle: rows of W are ordered accum(accum), accum(delta), tanh(in), mult(mask), mult(main),
    # plus(a), plus(b); columns accum, tanh, mult, plus (the layout the compiler produced, read off once).
    assert [g.type.name for g in lay.groups] == ["accumulator", "tanh", "mult", "plus"]

    @jax.jit
    def hand(W, y0):
        def body(y, _):
            x = jnp.matmul(W, y, precision="highest")
            a, b, t, mm, mn, pa, pb = (x[i * q : (i + 1) * q] for i in range(7))
            y = jnp.concatenate([a + b, jnp.tanh(t), mm * mn, pa + pb])
            return y, y[rec]

        return jax.lax.scan(body, y0, None, length=T)[1]

    run = lambda: m.run(T, record=["t1_0.out"])["t1_0.out"]  # noqa: E731
    np.testing.assert_allclose(run(), np.asarray(hand(W, y0)), rtol=1e-5, atol=1e-6)
    t_hand = best_time(lambda: hand(W, y0), repeat=7) / T
    t_dmm = best_time(run, repeat=7) / T
    print(f"hand-written jitted cycle: {t_hand * 1e6:8.1f} us/cycle")
    print(f"dmm runtime (run):         {t_dmm * 1e6:8.1f} us/cycle")
    print(f"ratio runtime / hand-written = {t_dmm / t_hand:.3f}")


if __name__ == "__main__":
    main()
