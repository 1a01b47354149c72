"""What the host loop (`fit`) reports to: a progress bar, a JSONL metrics log, checkpoints.

A callback is a `Callback`: `fit` calls its `chunk` after every jitted call with a `Chunk` (the new state and the
metrics of the steps it took), `end` after the last step, and `close` in any case (also when training stops with an
error). A callback with `every` > 0 also makes `fit` end a chunk at every multiple of `every` steps.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, NamedTuple, TextIO

import numpy as np

from dmm.files import save_checkpoint

from .state import TrainState


class ProgressBar:
    """A plain-text progress bar on stderr: ``step 120/2500 [###.......] loss 3.21e+00 links 1486 250 it/s ETA 9s``.

    On a terminal it redraws one line at most every `every` seconds; otherwise it prints a line at every tenth of
    the run. `update(done, **fields)` shows the fields (floats in scientific notation); `close()` ends the line.

    **Arguments:** `total` (int: steps of the run), `stream` (a text stream; default stderr), `every` (float
    seconds between redraws on a terminal), `width` (int: characters of the bar), `label` (str: the word before
    the count).
    """

    def __init__(self, total: int, *, stream: TextIO | None = None, every: float = 0.2, width: int = 20, label: str = "step"):
        self.total = max(int(total), 1)
        self.stream = sys.stderr if stream is None else stream
        self.every, self.width, self.label = every, width, label
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self.last = -math.inf
        self.next_tenth = 1
        self.line = ""

    def _render(self, done: int, fields: Mapping[str, Any]) -> str:
        frac = min(done / self.total, 1.0)
        filled = round(frac * self.width)
        dt = time.perf_counter() - self.t0
        rate = done / dt if dt > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else 0.0
        parts = [f"{self.label} {done}/{self.total} [{'#' * filled}{'.' * (self.width - filled)}]"]
        for k, v in fields.items():
            parts.append(f"{k} {v:.3e}" if isinstance(v, float) else f"{k} {v}")
        parts.append(f"{rate:.1f} it/s ETA {eta:.0f}s")
        return " ".join(parts)

    def update(self, done: int, **fields: Any) -> None:
        """Show `done` (int: steps done so far) and `fields` (name: float or int)."""
        now = time.perf_counter()
        if self.tty:
            if now - self.last >= self.every or done >= self.total:
                self.last = now
                line = self._render(done, fields)
                pad = max(len(self.line) - len(line), 0)
                self.stream.write("\r" + line + " " * pad)
                self.stream.flush()
                self.line = line
        elif done * 10 >= self.next_tenth * self.total:
            while done * 10 >= self.next_tenth * self.total:
                self.next_tenth += 1
            self.stream.write(self._render(done, fields) + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the line on a terminal."""
        if self.tty and self.line:
            self.stream.write("\n")
            self.stream.flush()
            self.line = ""


class MetricsLog:
    """Appends one JSON object per line to `path` (a str or path; JSONL): ``MetricsLog(path).write(step=1, loss=0.5)``."""

    def __init__(self, path: str | os.PathLike):
        self.path = path
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115  (kept open across writes; see close)

    def write(self, **record: Any) -> None:
        """Append `record` (JSON-serialisable values) as one line."""
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> MetricsLog:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Chunk(NamedTuple):
    """What one jitted call of `fit` did.

    - `state`: the `TrainState` after it.
    - `first`: int, the step count before it (its steps are ``first + 1 .. first + k``).
    - `rows`: {"loss", "penalty", "grad_norm": float64 arrays (k,), "links": int arrays (k,)}: each step's metrics.
    - `horizons`: int array (k,): the horizon of each step.
    - `done`, `total`: ints, steps done by this `fit` so far and in all.
    - `evaluation`: None, or when the chunk ended with a held-out evaluation (``fit(..., eval_every=...)``, at step
      ``first + k``) its values ``{"loss": float, metric name: float, ...}`` (see `Trainer.measure`).
    """

    state: TrainState
    first: int
    rows: dict[str, np.ndarray]
    horizons: np.ndarray
    done: int
    total: int
    evaluation: dict[str, float] | None = None


class Callback:
    """The protocol of `fit`'s callbacks (every method does nothing by default).

    - `every`: int; when positive, `fit` ends a chunk at every multiple of `every` steps (so `chunk` sees them).
    """

    every: int = 0

    def chunk(self, info: Chunk) -> None:
        """Called after every jitted call with its `Chunk`."""

    def end(self, state: TrainState) -> None:
        """Called with the final `TrainState` when all steps are done."""

    def close(self) -> None:
        """Called last, also when training stops with an error."""


class ShowProgress(Callback):
    """A `ProgressBar` of `total` (int) steps on `stream` (default stderr) showing the last loss and link count,
    and the latest held-out evaluation (``eval_loss``, ``eval_<metric>``) once there is one."""

    def __init__(self, total: int, stream: TextIO | None = None):
        self.bar = ProgressBar(total, stream=stream)
        self.evaluation: dict[str, float] = {}

    def chunk(self, info: Chunk) -> None:
        if info.evaluation is not None:
            self.evaluation = {f"eval_{k}": float(v) for k, v in info.evaluation.items()}
        self.bar.update(info.done, loss=float(info.rows["loss"][-1]), links=int(info.rows["links"][-1]),
                        **self.evaluation)

    def close(self) -> None:
        self.bar.close()


class LogMetrics(Callback):
    """One JSONL line per step appended to `path` (a str or path): step, horizon, seconds since the start, loss,
    penalty, grad_norm, links; and after the line of a step with a held-out evaluation, an evaluation line: step,
    horizon, seconds, eval_loss and eval_<metric> for each metric (no "loss" key, so the two are told apart)."""

    def __init__(self, path: str | os.PathLike):
        self.log = MetricsLog(path)
        self.t0 = time.perf_counter()

    def chunk(self, info: Chunk) -> None:
        seconds = round(time.perf_counter() - self.t0, 4)
        for i, h in enumerate(info.horizons):
            self.log.write(step=info.first + i + 1, horizon=int(h), seconds=seconds,
                           **{f: v[i].item() for f, v in info.rows.items()})
        if info.evaluation is not None:
            step = info.first + len(info.horizons)
            self.log.write(step=step, horizon=int(info.horizons[-1]), seconds=seconds,
                           **{f"eval_{k}": float(v) for k, v in info.evaluation.items()})

    def close(self) -> None:
        self.log.close()


class SaveCheckpoints(Callback):
    """Save the state to `path` (see `dmm.files.save_checkpoint`) every `every` steps (an int; 0: never) and at
    the end."""

    def __init__(self, path: str | os.PathLike, every: int = 0):
        self.path, self.every = path, int(every)

    def chunk(self, info: Chunk) -> None:
        if self.every and info.done % self.every == 0 and info.done < info.total:
            save_checkpoint(self.path, info.state)

    def end(self, state: TrainState) -> None:
        save_checkpoint(self.path, state)
