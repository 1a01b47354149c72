"""Shared helpers for the benchmark scripts (timing, machine facts)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import jax


def best_time(fn: Callable[[], object], repeat: int = 5, number: int = 1) -> float:
    """Best wall time in seconds of `number` calls of `fn` (results blocked on), over `repeat` tries."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            jax.block_until_ready(fn())
        best = min(best, (time.perf_counter() - t) / number)
    return best


def machine_line() -> str:
    """One line describing where the benchmark ran."""
    dev = jax.devices()[0]
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}, "
        f"device {dev.platform}:{dev.device_kind}"
    )
