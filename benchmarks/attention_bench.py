"""The softmax attention neuron inside a DMM run against `jax.nn.dot_product_attention` on the same data.

    python benchmarks/attention_bench.py            # L = 256, 8 heads, d = 64 per head (and d_model = 64), T = 16 cycles
    python benchmarks/attention_bench.py --quick    # a small smoke run

A program feeds Q, K, V (L × d_model matrix streams, from external sources, one new triple per cycle) into one
`attention.matrix_attention` neuron and records its output for T cycles (`Machine.run`, one jitted `lax.scan`).
The baseline calls `jax.nn.dot_product_attention` (jitted) on the same T triples, both as one batch and one triple
at a time in a `lax.map`; the ratio uses the faster of the two. All return NumPy arrays; the outputs are checked
equal first. Times are the best of the repeats after compilation; the ratio
DMM / baseline is printed last (acceptance: ≤ 1.2 at L = 256, d = 64, 8 heads).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dmm
import neurons
from attention import dot_product_attention, matrix_attention


def best_of(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def case(L: int, heads: int, d_head: int, steps: int, repeats: int, key) -> float:
    d = heads * d_head
    kind = dmm.Kind("seq", (L, d))
    p = dmm.Program()
    for s in "qkv":
        p.add(s, neurons.external(kind))
    p.add("att", matrix_attention(kind, heads=heads))
    for s in "qkv":
        p.link(f"{s}.out", f"att.{s}", 1.0)
    m = dmm.compile(p)
    ks = jax.random.split(key, 3)
    data = {s: jax.random.normal(k, (steps, L, d)) for s, k in zip("qkv", ks)}
    inputs = {f"{s}.out": data[s] for s in "qkv"}
    split = lambda a: a.reshape(-1, L, heads, d_head)
    batched = jax.jit(lambda q, k, v: jax.nn.dot_product_attention(split(q), split(k), split(v)).reshape(steps, L, d))
    one = lambda x: jax.nn.dot_product_attention(*(split(a) for a in x)).reshape(L, d)
    mapped = jax.jit(lambda q, k, v: jax.lax.map(one, (q, k, v)))
    bare = jax.jit(lambda q, k, v: jax.lax.map(lambda x: dot_product_attention(*x, heads=heads), (q, k, v)))

    feed = {s: jnp.concatenate([a, a[:1]]) for s, a in inputs.items()}  # cycle c + 1 attends the data of cycle c

    def dmm_call():
        return m.run(steps + 1, inputs=feed, record=["att.out"])["att.out"]

    def base_batched():
        return np.asarray(batched(data["q"], data["k"], data["v"]))

    def base_mapped():
        return np.asarray(mapped(data["q"], data["k"], data["v"]))

    got, ref = dmm_call()[1:], base_batched()
    err = float(np.abs(got - ref).max() / np.abs(ref).max())
    assert err < 1e-5 and np.allclose(base_mapped(), ref, rtol=1e-5, atol=1e-6), err
    t_dmm = best_of(dmm_call, repeats) / (steps + 1)  # the DMM runs one extra cycle to read the last triple
    t_batched = best_of(base_batched, repeats) / steps
    t_mapped = best_of(base_mapped, repeats) / steps
    t_bare = best_of(lambda: np.asarray(bare(data["q"], data["k"], data["v"])), repeats) / steps
    ratio = t_dmm / min(t_batched, t_mapped)
    print(f"L = {L}, heads = {heads}, d_head = {d_head} (d_model = {d}), T = {steps}: DMM run {1e3 * t_dmm:.3f} ms/cycle; "
          f"jax.nn.dot_product_attention batched {1e3 * t_batched:.3f}, lax.map {1e3 * t_mapped:.3f} ms/call; "
          f"the neuron's kernel (attention.dot_product_attention) in a bare lax.map {1e3 * t_bare:.3f} ms/call "
          f"(DMM overhead {t_dmm / t_bare:.2f}x); max rel. difference {err:.1e}; ratio to the faster baseline {ratio:.3f}",
          flush=True)
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    print(f"# {platform.processor() or platform.machine()}, jax {jax.__version__}, backend {jax.default_backend()}")
    key = jax.random.key(0)
    if args.quick:
        print(f"ratio DMM / direct: {case(32, 2, 8, 4, 2, key):.3f}")
        return
    r_small = case(256, 8, 8, 16, args.repeats, key)
    r = case(256, 8, 64, 16, args.repeats, key)
    print(f"d_model = 64 (d_head = 8): ratio {r_small:.3f}")
    print(f"ratio DMM / direct at L = 256, d = 64 per head, 8 heads: {r:.3f}")


if __name__ == "__main__":
    main()
