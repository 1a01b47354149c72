"""Self-reference: the Self neuron, constant matrix updates and the live-edit channel.

All three have streams of the NETWORK kind, whose value is the network matrix (see `dmm.NetworkLayout`). Matrix
entries are named symbolically as ``{(source output port, target input port): value}`` and placed when the program
is compiled, so the same neuron works whatever the program's final shape.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from dmm import NETWORK, Neuron, Program, ProgramError, make_type, matrix_entries, neuron_type


Entries = Mapping[tuple[str, str], float]


@neuron_type("self")
def self_matrix():
    """Self: an accumulator of the NETWORK kind whose output *is* the network matrix.

    y.out = x.accum + x.delta. With its hard weight-1 link out -> accum (`add_self` makes it),
    W_c = W_{c-1} + Σ_u W_{c-1}[Self.delta, u]·Y_{c-1}[u]; every down movement uses Self's latest output as W, and
    the program's links give W_0.
    """
    return make_type(
        {"accum": NETWORK, "delta": NETWORK}, {"out": NETWORK}, fn=lambda p, x, ctx: {"out": x["accum"] + x["delta"]}, role="self"
    )


def add_self(program: Program, name: str = "self") -> None:
    """Add a Self neuron to `program` with its conventional hard (non-trainable) weight-1 link out -> accum."""
    program.add(name, self_matrix())
    program.link(f"{name}.out", f"{name}.accum", 1.0, trainable=False)


@neuron_type("constant_matrix")
def constant_matrix_type():
    """An update neuron: y.out = U every cycle, where the parameter U is a NETWORK-kind value given as matrix entries
    (a constant ΔW that drives matrix waves when routed into Self's delta)."""
    return make_type({}, {"out": NETWORK}, fn=lambda p, x, ctx: {"out": p["value"]}, defaults={"value": NETWORK})


def constant_matrix(entries: Entries = ()) -> Neuron:
    """An update neuron emitting the constant matrix with `entries` ``{(src, dst): u}`` (zero elsewhere) every
    cycle. Constant-matrix neurons with different entries share one type, so they run as one group."""
    return Neuron(constant_matrix_type(), {"value": entries})


@neuron_type("edit_channel")
def edit_channel(events: Mapping[int, Entries] | tuple = ()):
    """A live-edit channel (network-update monitor): y.out at cycle c is the matrix edit scheduled for c (zero
    otherwise), or whatever the caller feeds it through `run(inputs={"name.out": (steps, *network shape)})`.

    `events`: {cycle: {(src, dst): delta}}. Wired into Self.delta with weight 1, an edit emitted at cycle e is first
    used by the down movement of cycle e + 2. The schedule is configuration (channels with different schedules
    compile as separate groups); for edits decided at run time, feed the channel through `run(inputs=...)`.
    """
    items = events.items() if isinstance(events, Mapping) else events
    sched = []
    for c, entries in items:
        if int(c) < 1:
            raise ProgramError(f"edit_channel: event cycle {c} is not a cycle (cycles start at 1)")
        sched.append((int(c), matrix_entries(entries, f"edit_channel event at cycle {c}")))
    sched = tuple(sched)

    def fn(p, x, ctx):
        if not sched:
            return {"out": jnp.zeros(ctx.network.kind.shape)}
        cycles = np.array([c for c, _ in sched], np.int32)
        values = jnp.asarray(np.stack([ctx.network.delta(e) for _, e in sched]))
        hit = (ctx.cycle == cycles).astype(values.dtype)
        return {"out": jnp.tensordot(hit, values, axes=1)}

    return make_type({}, {"out": NETWORK}, fn=fn)
