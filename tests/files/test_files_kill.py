"""Saves killed by SIGKILL at random moments: afterwards the previous version or the new one loads, never neither,
and the next save removes the killed save's temporary file.

A child process saves two versions of a program, a trace and a checkpoint (a few MB each, so that a kill often lands
in the middle of a write) alternately to the same name, forever; the parent kills it after a random delay and loads
what is there. The default run kills DEFAULT_KILLS times per format; ``-m slow`` kills SLOW_KILLS times per format
(``DMM_KILLS`` overrides both)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import dmm
import dmm.files
from helpers import ROOT  # the repository root: the child imports the packages from there

DEFAULT_KILLS = int(os.environ.get("DMM_KILLS", 2))
SLOW_KILLS = int(os.environ.get("DMM_KILLS", 40))

SETUP = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    import dmm, dmm.files, neurons

    def version(v):
        big = np.full((700, 700), float(v), np.float64)
        p = dmm.Program()
        p.add("m", neurons.const(big, dmm.Kind("mat", (700, 700))))
        p.add("c", neurons.const(float(v)))
        p.add("s", neurons.sink(["y"]))
        p.link("c.out", "s.y", float(v))
        trace = dmm.Trace({"a": np.full((2000, 500), v, np.float32)}, {"a": dmm.Kind("v", (500,))}, v)
        state = {"w": jnp.full((1000, 1000), v, jnp.float32), "key": jax.random.key(v), "v": jnp.int32(v)}
        return p, trace, state

    def save(fmt, path, v):
        p, trace, state = version(v)
        if fmt == "program":
            dmm.files.save_program(p, path)
        elif fmt == "trace":
            dmm.files.save_trace(trace, path)
        else:
            dmm.files.save_checkpoint(path, state, {"v": v}, keep=2 if v % 2 else None)
""")

CHILD = SETUP + textwrap.dedent("""
    import sys
    fmt, path = sys.argv[1], sys.argv[2]
    version(1)  # start JAX and build both versions' shapes once, so that the kills land in saves, not in start-up
    print("ready", flush=True)
    v = 1
    while True:
        save(fmt, path, 1 + v % 2)
        v += 1
""")


def loaded_version(fmt: str, path: Path, like) -> int:
    if fmt == "program":
        p = dmm.files.load_program(path)
        return int(p.links[0].weight)
    if fmt == "trace":
        return int(dmm.files.load_trace(path).first_cycle)
    return int(dmm.files.load_checkpoint(path, like)["v"])


def kill_run(tmp_path, fmt: str, kills: int) -> dict:
    ns: dict = {}
    exec(SETUP, ns)
    path = tmp_path / {"program": "p.json", "trace": "t.npz", "checkpoint": "ck.npz"}[fmt]
    ns["save"](fmt, path, 1)
    like = ns["version"](1)[2]
    stats = {"kills": 0, "temp files left by the kill": 0, "version 1": 0, "version 2": 0}
    rng = random.Random(20261202)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(kills):
        child = subprocess.Popen([sys.executable, "-c", CHILD, fmt, str(path)], stdout=subprocess.PIPE, env=env,
                                 cwd=ROOT)
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 1.5))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        stats["kills"] += 1
        v = loaded_version(fmt, path, like)  # must load: the old version or the new one
        assert v in (1, 2)
        stats[f"version {v}"] += 1
        temps = [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]
        stats["temp files left by the kill"] += bool(temps)
        ns["save"](fmt, path, v)  # the next save cleans up after the killed one
        assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]
    print(f"kill test {fmt}: {stats}")
    return stats


@pytest.mark.parametrize("fmt", ["program", "trace", "checkpoint"])
def test_killed_saves(tmp_path, fmt):
    kill_run(tmp_path, fmt, DEFAULT_KILLS)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["program", "trace", "checkpoint"])
def test_killed_saves_many(tmp_path, fmt):
    stats = kill_run(tmp_path, fmt, SLOW_KILLS)
    assert stats["version 1"] and stats["version 2"]  # the kills landed at different moments
