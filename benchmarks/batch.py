"""Batch throughput of `dmm.run_batch` on 1, 2 and 4 devices: instance-cycles per second.

Each device count runs in its own subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=n`` (so on a
CPU-only machine the devices are forced host devices sharing the machine's cores; on a multi-GPU host, pass
``--platform gpu`` to use the real devices instead). The workload: B instances of one random network of N tanh
neurons on a D-dimensional vector kind (10 % of the links present, dense W), each instance driven by its own random
input for T cycles, recording every output. The time is the best of R calls after a compiling call, end to end
(placing the batch on the devices, running, gathering the records to NumPy).

    python benchmarks/batch.py                      # N=256, D=16, B=16, T=1000
    python benchmarks/batch.py --neurons 512 --batch 32

Prints one line per device count, then the ratios against 1 device, the last line being 4 devices / 1 device.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def worker(args: argparse.Namespace) -> None:
    import jax
    import numpy as np

    import dmm
    import neurons

    rng = np.random.default_rng(0)
    kind = dmm.Kind("vec", (args.dim,))
    p = dmm.Program()
    for i in range(args.neurons):
        p.add(f"n{i}", neurons.tanh(kind))
    p.add("src", neurons.external(kind))
    for i in range(args.neurons):
        for j in np.flatnonzero(rng.random(args.neurons) < 0.1):
            p.link(f"n{j}.out", f"n{i}.in", float(rng.normal() / np.sqrt(0.1 * args.neurons)))
        p.link("src.out", f"n{i}.in", float(rng.normal()))
    m = dmm.compile(p)
    xs = rng.normal(size=(args.batch, args.steps, args.dim)).astype(np.float32)
    n = len(jax.devices())
    run = lambda: dmm.run_batch(m, args.steps, inputs={"src.out": xs}, devices=n)  # noqa: E731
    t0 = time.perf_counter()
    run()
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({"devices": n, "platform": jax.devices()[0].platform, "seconds": best, "first_call_s": compile_s,
                      "rate": args.batch * args.steps / best}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--neurons", type=int, default=256)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--devices", default="1,2,4", help="device counts to measure, comma-separated")
    ap.add_argument("--platform", default="cpu", help="cpu (forced host devices) or gpu (the first n real GPUs)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    counts = [int(c) for c in args.devices.split(",")]
    print(f"run_batch: N={args.neurons} tanh neurons, D={args.dim}, B={args.batch} instances, T={args.steps} cycles, "
          f"best of {args.repeats}")
    rates = {}
    for n in counts:
        env = dict(os.environ)
        if args.platform == "cpu":
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()
            env["JAX_PLATFORMS"] = "cpu"
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(n))
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", *sys.argv[1:]]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"worker with {n} devices failed:\n{done.stderr[-2000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rates[n] = r["rate"]
        print(f"{n} {r['platform']} device(s): {r['seconds'] * 1e3:8.1f} ms per batch, {r['rate']:12,.0f} instance-cycles/s"
              f"  (first call {r['first_call_s']:.1f} s)")
    base = counts[0]
    for n in counts[1:]:
        print(f"ratio {n} devices / {base} device: {rates[n] / rates[base]:.2f}")


if __name__ == "__main__":
    main()
