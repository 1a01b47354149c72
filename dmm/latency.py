"""Latency in the feed-forward part of a program: depths, alignment by delay chains, and the rows a loss may read.

Every neuron adds one cycle (X_c = W·Y_{c-1}, Y_c = F(X_c)). What the *sources* are fed at cycle 1 (external
inputs overwrite their outputs Y_1) reaches a neuron's outputs at the cycle that is the neuron's **depth**:

    depth(source) = 1,   depth(n) = 1 + depth(m) for every neuron m that links to n

A neuron's inputs are *aligned* when all the neurons linking to it (into any of its input ports) have one depth;
otherwise the neuron mixes data fed at different cycles (different tokens, different examples), and `depths`
raises a `ProgramError` naming the neuron, its input streams and their depths. `align` repairs that by inserting
delay chains (identity neurons), `first_cycle` tells at which cycle a stream first carries the sources' cycle-1
input, and `check_rows` / `check_cycles` refuse trace rows that a loss would read too early.

Rules:

- **Sources.** By default, the neurons without incoming links (self-links aside); or the neurons named by
  ``sources=`` (a neuron name or a stream ``"neuron.port"``, which stands for its neuron, or a sequence of them).
  Links into a named source are not followed (it is fed at cycle 1), and neurons not reachable from the sources
  carry nothing of theirs and take no part: their links are ignored.
- **Self-links** (a neuron's output linked to one of its own inputs: state, a register) are ignored.
- **Cycles.** A neuron on a cycle of links (through other neurons), or fed directly or indirectly by such a
  neuron, is outside the feed-forward part: it has no depth (`depths` leaves it out; `first_cycle` raises).
- The depth of an *input* stream ``"n.port"`` is one more than the depth of the neurons linking into it: the
  cycle at which X_c of that port first carries the input.

Delay neurons made by `align` are named ``f"{neuron}~{port}~d{j}"`` after the *source* stream ``neuron.port`` they
delay, j = 1, 2, ... cycles: one chain per source stream, tapped at every delay its consumers need. An existing
neuron of that name is reused when it is such a delay already (an identity neuron of the stream's kind fed only by
the previous element with a fixed weight-1 link), so aligning an aligned-then-grown program extends its chains;
any other neuron of that name is a clash and raises `ProgramError`.

Example:

    p = dmm.Program()
    p.add("x", neurons.external())
    p.add("f", neurons.identity())
    p.add("add", neurons.plus())
    p.link("x.out", "f.in"); p.link("f.out", "add.a"); p.link("x.out", "add.b", 0.5)
    dmm.depths(p)        # ProgramError: neuron 'add' mixes ... add.a <- f.out (depth 2), add.b <- x.out (depth 1)
    q = dmm.align(p)     # adds "x~out~d1"; the link x~out~d1.out -> add.b keeps the weight 0.5
    dmm.depths(q)        # {'x': 1, 'f': 2, 'add': 3, 'x~out~d1': 2}
    dmm.first_cycle(q, "add.out")   # 3
"""

from __future__ import annotations

import dataclasses
import heapq
import operator
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .errors import ProgramError
from .neuron import lookup
from .program import Program, split_stream

MODES = ("insert", "error")
"""The modes of `align`."""


# ------------------------------------------------------------------------------------------------------ analysis


@dataclasses.dataclass(frozen=True)
class _Analysis:
    """The feed-forward structure of a program for a set of sources (see the module docstring).

    `preds`: {neuron: [(source stream, input stream), ...]}, the followed links into each neuron (self-links, links
    into sources and links from unreachable neurons left out), in link order; `depth`: {neuron: 1 + the *largest*
    depth among its predecessors} for the feed-forward neurons, in topological order; `mixed`: the neurons whose
    predecessors have several depths, in topological order; `cyclic`: {neuron: a neuron on a cycle it depends on}.
    """

    sources: tuple[str, ...]
    preds: dict[str, list[tuple[str, str]]]
    depth: dict[str, int]
    mixed: tuple[str, ...]
    cyclic: dict[str, str]


def _neuron_of(program: Program, name: Any, what: str) -> str:
    if not isinstance(name, str):
        raise ProgramError(f"{what}: a source must be a neuron name or a stream 'neuron.port', not {name!r}")
    if "." in name:
        program.port(name)  # UnknownStreamError naming the neuron or port
        return split_stream(name)[0]
    program.neuron(name)
    return name


def _source_names(program: Program, sources: Any, what: str) -> tuple[str, ...] | None:
    if sources is None:
        return None
    items = [sources] if isinstance(sources, str) else list(sources) if isinstance(sources, Iterable) else [sources]
    if not items:
        raise ProgramError(f"{what}: sources is empty; name at least one neuron (or pass None for the default)")
    return tuple(dict.fromkeys(_neuron_of(program, s, what) for s in items))


def _analyse(program: Program, sources: Any = None, what: str = "depths") -> _Analysis:
    names = list(program.neurons)
    order = {n: i for i, n in enumerate(names)}
    chosen = _source_names(program, sources, what)
    pairs, _, _ = program.link_columns()
    into: dict[str, list[tuple[str, str]]] = {n: [] for n in names}
    for src, dst in pairs:
        s, d = src.split(".", 1)[0], dst.split(".", 1)[0]
        if s != d:
            into[d].append((src, dst))
    if chosen is None:
        chosen = tuple(n for n in names if not into[n])
    roots = set(chosen)
    for n in roots:
        into[n] = []
    succ: dict[str, list[str]] = {n: [] for n in names}
    for d, links in into.items():
        for src, _ in links:
            succ[src.split(".", 1)[0]].append(d)
    # reachable from the sources
    reach = set(roots)
    todo = list(chosen)
    while todo:
        for m in succ[todo.pop()]:
            if m not in reach:
                reach.add(m)
                todo.append(m)
    preds = {n: [(s, d) for s, d in into[n] if s.split(".", 1)[0] in reach] for n in names if n in reach}
    # strongly connected components of the reachable part (iterative Tarjan): neurons on cycles
    on_cycle = _cycles([n for n in names if n in reach], {n: [m for m in succ[n] if m in reach] for n in reach})
    cyclic: dict[str, str] = {}
    todo = [n for n in names if n in on_cycle]
    for n in todo:
        cyclic[n] = n
    while todo:
        n = todo.pop()
        for m in succ[n]:
            if m in reach and m not in cyclic:
                cyclic[m] = cyclic[n]
                todo.append(m)
    # topological order (Kahn, ties in program order) and depths of the feed-forward part
    ff = [n for n in names if n in reach and n not in cyclic]
    need = {n: len({s.split(".", 1)[0] for s, _ in preds[n]}) for n in ff}
    ready = [n for n in ff if need[n] == 0]
    depth: dict[str, int] = {}
    mixed: list[str] = []
    heap = [(order[n], n) for n in ready]
    heapq.heapify(heap)
    while heap:
        _, n = heapq.heappop(heap)
        ds = {depth[s.split(".", 1)[0]] for s, _ in preds[n]}
        depth[n] = 1 + max(ds) if ds else 1
        if len(ds) > 1:
            mixed.append(n)
        for m in dict.fromkeys(succ[n]):
            if m in need:
                need[m] -= 1
                if need[m] == 0:
                    heapq.heappush(heap, (order[m], m))
    return _Analysis(chosen, preds, depth, tuple(mixed), cyclic)


def _cycles(nodes: list[str], succ: Mapping[str, list[str]]) -> set[str]:
    """The nodes in strongly connected components of more than one node (self-loops are not edges here)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: set[str] = set()
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(succ[w])))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.update(comp)
    return out


def _mixed_error(a: _Analysis, n: str, what: str) -> ProgramError:
    parts = [f"{dst} <- {src} (depth {a.depth[src.split('.', 1)[0]]})" for src, dst in a.preds[n]]
    return ProgramError(
        f"{what}: neuron {n!r} mixes data fed at different cycles: its inputs get {', '.join(parts)}; every stream "
        "into a neuron must have one depth (dmm.align inserts the delays)"
    )


# ------------------------------------------------------------------------------------------------------ public


def depths(program: Program, sources: Any = None) -> dict[str, int]:
    """The depth of every neuron of the feed-forward part of `program` (see the module docstring for the rules).

    **Arguments:** `program`; `sources`: None (the neurons without incoming links, self-links aside), a neuron
    name or stream ``"neuron.port"`` (its neuron), or a sequence of them.

    **Returns:** {neuron name: depth (int ≥ 1)}, in program order: the cycle at which the neuron's outputs first
    carry what the sources were fed at cycle 1. Neurons not reachable from the sources, on a cycle of links or fed
    by one are left out. Raises `ProgramError` naming the neuron, its input streams and their depths when a
    neuron's inputs have different depths (the first such neuron in topological order), and
    `UnknownStreamError` for an unknown source.
    """
    a = _analyse(program, sources, "depths")
    if a.mixed:
        raise _mixed_error(a, a.mixed[0], "depths")
    return {n: a.depth[n] for n in program.neurons if n in a.depth}


def delay_name(stream: str, j: int) -> str:
    """The name `align` gives the delay neuron that carries output stream ``"neuron.port"`` `j` cycles late:
    ``f"{neuron}~{port}~d{j}"``."""
    n, p = split_stream(stream)
    return f"{n}~{p}~d{int(j)}"


def align(program: Program, *, mode: str = "insert", sources: Any = None) -> Program:
    """A copy of `program` whose feed-forward inputs are aligned in time (see the module docstring).

    **Arguments:**

    - `program`: the program (not modified).
    - `mode`: ``"insert"`` inserts delay chains where needed; ``"error"`` raises the `ProgramError` of `depths`
      instead (and returns a copy when nothing is misaligned).
    - `sources`: as in `depths`.

    Every neuron takes the largest depth among its inputs' sources; each link from a shallower source stream s is
    moved to the end of a chain of identity neurons (the registered type ``"identity"``) on s, named
    `delay_name`\\ (s, j), one chain per source stream shared by all its late consumers. The moved link keeps its
    weight and trainable flag; the chain's links are weight 1, ``trainable=False``; delay neurons start at zero
    (they carry nothing before the sources' data reaches them). Neurons, links (in order, the chain links after
    them) and initial values are otherwise copied unchanged, so an aligned program's `align` is equal to it.

    **Returns:** the new `Program`. Raises `ProgramError` for a bad `mode`, in mode "error" for a misalignment, and
    when a delay name is taken by a neuron that is not that delay.
    """
    if mode not in MODES:
        raise ProgramError(f"align: mode must be one of {MODES}, not {mode!r}")
    a = _analyse(program, sources, "align")
    if not a.mixed:
        return program.copy()
    if mode == "error":
        raise _mixed_error(a, a.mixed[0], "align")
    pairs, weights, trainable = program.link_columns()
    into: dict[str, list[tuple[str, float, bool]]] = {}
    for (s, d), w, t in zip(pairs, weights.tolist(), trainable.tolist()):
        into.setdefault(d, []).append((s, w, t))
    lag: dict[tuple[str, str], int] = {}
    longest: dict[str, int] = {}
    for n in a.mixed:
        for s, d in a.preds[n]:
            k = a.depth[n] - 1 - a.depth[s.split(".", 1)[0]]
            if k > 0:
                lag[(s, d)] = k
                longest[s] = max(longest.get(s, 0), k)
    identity = lookup("identity")
    new_neurons: list[tuple[str, Any]] = []
    new_links: list[tuple[str, str]] = []
    made: dict[str, str] = {}  # delay name -> the stream it delays
    for s, length in longest.items():
        kind = program.port(s).kind
        prev = s
        for j in range(1, length + 1):
            name = delay_name(s, j)
            if made.get(name, s) != s:
                raise ProgramError(f"align: the delay names of {s!r} and {made[name]!r} clash ({name!r})")
            made[name] = s
            if name in program.neurons:
                neuron = program.neurons[name]
                if neuron.type != identity(kind) or into.get(f"{name}.in") != [(prev, 1.0, False)]:
                    raise ProgramError(
                        f"align: the delay neuron name {name!r} (for {s!r} delayed {j} cycles) is taken by a neuron "
                        "that is not that delay; rename it"
                    )
            else:
                new_neurons.append((name, identity(kind)))
                new_links.append((prev, f"{name}.in"))
            prev = f"{name}.out"
    out = Program(links_trainable=program.links_trainable)
    for n, neuron in program.neurons.items():
        out.add(n, neuron)
    for n, t in new_neurons:
        out.add(n, t)
    for s, v in program.initial.items():
        out.set_initial(s, v)
    src = [delay_name(s, lag[(s, d)]) + ".out" if (s, d) in lag else s for s, d in pairs]
    dst = [d for _, d in pairs]
    out.link_many(src + [s for s, _ in new_links], dst + [d for _, d in new_links],
                  np.concatenate([weights, np.ones(len(new_links))]),
                  trainable=np.concatenate([trainable, np.zeros(len(new_links), bool)]))
    return out


def first_cycle(program: Program, stream: str, source: Any = None) -> int:
    """The cycle at which `stream` first carries what the sources were fed at cycle 1.

    **Arguments:** `program`; `stream`: ``"neuron.port"``, an output port (the neuron's depth) or an input port (one
    more than the depth of the neurons linking into it); `source`: as ``sources=`` of `depths` (default: the
    program's sources).

    **Returns:** an int ≥ 1. Raises `ProgramError` when the stream carries nothing from the sources (not reachable,
    or an input port of a source), when it lies on or behind a cycle of links, or when it or a neuron upstream of it
    mixes depths (naming that neuron, as `depths` does); `UnknownStreamError` for an unknown name.
    """
    program.port(stream)
    n, port = split_stream(stream)
    a = _analyse(program, source, "first_cycle")
    what = f"first_cycle of {stream!r}"
    if n in a.cyclic:
        on = a.cyclic[n]
        where = "lies on a cycle of links" if on == n else f"is fed by neuron {on!r}, which lies on a cycle of links"
        raise ProgramError(f"{what}: neuron {n!r} {where}; it has no depth")
    if n not in a.preds:
        raise ProgramError(f"{what}: neuron {n!r} is not reachable from the sources {list(a.sources)[:8]}")
    if program.is_input(stream):
        links = [(s, d) for s, d in a.preds[n] if d == stream]
        if not links:
            why = "is an input of a source" if n in a.sources else "has no link from a neuron reached by the sources"
            raise ProgramError(f"{what}: the input stream {why}, so it carries nothing of theirs")
        ups = {s.split(".", 1)[0] for s, _ in links}
    else:
        ups = {n}
    # the neurons upstream (and at) the stream must all be aligned
    seen = set(ups)
    todo = list(ups)
    while todo:
        for s, _ in a.preds[todo.pop()]:
            m = s.split(".", 1)[0]
            if m not in seen:
                seen.add(m)
                todo.append(m)
    bad = [m for m in a.mixed if m in seen]
    if bad:
        raise _mixed_error(a, bad[0], what)
    ds = {a.depth[m] for m in ups}
    if len(ds) > 1:
        parts = [f"{s} (depth {a.depth[s.split('.', 1)[0]]})" for s, _ in links]
        raise ProgramError(f"{what}: the input stream mixes data fed at different cycles: it gets {', '.join(parts)}")
    return ds.pop() + (1 if program.is_input(stream) else 0)


# ------------------------------------------------------------------------------------------------------ rows


def _index(value: Any, what: str) -> int | None:
    """`value` as an int, or None when it is a traced value (under a JAX transformation)."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        if hasattr(value, "aval"):  # a JAX array: concrete converts, traced does not
            try:
                return operator.index(np.asarray(value).item()) if np.ndim(value) == 0 else None
            except Exception:
                return None
        raise ProgramError(f"{what}: {value!r} is not an integer") from None


def earliest_row(rows: Any, steps: int | None = None) -> int | None:
    """The smallest row index that `rows` reads from a trace of `steps` rows.

    **Arguments:** `rows`: an int, a slice or an integer index array (any shape; a JAX array is fine);
    `steps`: the number of rows, needed for negative indices and negative slice steps (None: unknown).

    **Returns:** an int ≥ 0, or None when `rows` reads nothing (an empty slice or array) or is traced (under
    `jax.jit` and the like: the check is static, so traced rows are not checked). Raises `ProgramError` for rows of
    another type, a negative index without `steps`, or an index outside [-steps, steps).
    """
    where = "rows"
    if steps is not None:
        steps = operator.index(steps)
    if isinstance(rows, slice):
        start, stop, step = (_index(rows.start, where), _index(rows.stop, where), _index(rows.step, where))
        if any(v is None and b is not None for v, b in zip((start, stop, step), (rows.start, rows.stop, rows.step))):
            return None  # traced bounds
        if steps is not None:
            picked = range(steps)[slice(start, stop, step)]
            return min(picked) if len(picked) else None
        step = 1 if step is None else step
        if step < 0 or (start is not None and start < 0):
            raise ProgramError(f"rows {rows!r}: a negative start or step needs the number of steps")
        first = start or 0
        if stop is not None and 0 <= stop <= first:
            return None
        return first
    if hasattr(rows, "aval") or not isinstance(rows, (int, np.integer)):
        try:
            arr = np.asarray(rows)
        except Exception:
            if hasattr(rows, "aval"):
                return None
            raise ProgramError(f"rows must be an int, a slice or integer indices, not {type(rows).__name__}") from None
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
            raise ProgramError(f"rows must be an int, a slice or integer indices, not {arr.dtype}")
        if arr.size == 0:
            return None
        values = arr.astype(np.int64).ravel()
    else:
        if isinstance(rows, bool):
            raise ProgramError("rows must be an int, a slice or integer indices, not a bool")
        values = np.asarray([int(rows)], np.int64)
    if steps is None:
        if values.min() < 0:
            raise ProgramError(f"rows: the negative index {int(values.min())} needs the number of steps")
        return int(values.min())
    if values.min() < -steps or values.max() >= steps:
        bad = int(values[(values < -steps) | (values >= steps)][0])
        raise ProgramError(f"rows: index {bad} is outside a trace of {steps} rows")
    return int(np.where(values < 0, values + steps, values).min())


def check_cycles(stream: str, rows: Any, first: int, *, steps: int | None = None, start: int = 0) -> Any:
    """Raise `ProgramError` when trace rows read a cycle of `stream` before cycle `first`.

    **Arguments:** `stream`: the stream's name (for the message); `rows`: as in `earliest_row`; `first`: the first
    cycle that carries the input (an int, e.g. from `first_cycle`); `steps`: the trace's number of rows (None:
    unknown); `start`: the cycles done before the trace (its ``first_cycle`` attribute): row r holds cycle
    start + 1 + r. **Returns:** `rows`, unchanged. Traced rows (under JAX transformations) are not checked.
    """
    first = operator.index(first)
    row = earliest_row(rows, steps)
    if row is not None and operator.index(start) + 1 + row < first:
        cycle = operator.index(start) + 1 + row
        raise ProgramError(
            f"the loss reads row {row} (cycle {cycle}) of {stream!r}, which first carries the input at cycle {first}"
        )
    return rows


def check_rows(program: Program, stream: str, rows: Any, *, steps: int | None = None, source: Any = None,
               start: int = 0) -> Any:
    """Raise `ProgramError` when the trace `rows` a loss reads of `stream` come before `first_cycle`\\ (program,
    stream, source), e.g. "the loss reads row 3 (cycle 4) of 'readout.out', which first carries the input at
    cycle 5".

    **Arguments:** `program`; `stream` ``"neuron.port"``; `rows`: an int, a slice or an integer index array;
    `steps`: the trace's number of rows (needed for negative indices); `source`: as in `first_cycle`; `start`:
    cycles done before the trace (row r is cycle start + 1 + r; 0 for a run from the initial state).

    **Returns:** `rows`, unchanged (so ``rows=dmm.check_rows(p, s, slice(4, None))`` reads well). The check is
    static: rows traced under a JAX transformation are not checked.
    """
    return check_cycles(stream, rows, first_cycle(program, stream, source), steps=steps, start=start)
