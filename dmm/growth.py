"""Growth: carrying a running machine over to the compiled machine of a grown program, by port names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np

from .errors import ProgramError, UnknownStreamError

if TYPE_CHECKING:
    from .machine import Machine, Params, State


def transfer(new: Machine, old: Machine, state: State, params: Params | None = None) -> tuple[Params, State]:
    """Carry the running machine `old` over to `new` (a grown version of its program).

    Streams and weights are matched by name: every output stream of `old` that this machine has keeps its value
    in `state`, every W entry between ports both machines have keeps its value in `params` (and, with Self, in the
    running matrix; an old link whose weight became zero stays zero); new streams start at their initial values,
    new entries at the new program's link weights. NETWORK-kind streams are re-laid out entry by entry.
    Returns `new`'s ``(params, state)``.
    """
    params = old.params if params is None else params
    entries = old.weights(params)
    # a link trained or edited to exactly zero keeps its zero (it is not a missing entry)
    entries.update({(l.src, l.dst): 0.0 for l in old.program.links if (l.src, l.dst) not in entries})
    new_params = new.params
    keep = {e: w for e, w in entries.items() if _has_entry(new, *e)}
    new_params = new.set_weights(keep, new_params) if keep else new_params
    new_params = {**new_params, "neurons": _transfer_neuron_params(new, old, params["neurons"], new_params["neurons"])}
    new_state = new.init_state(new_params)
    outs = {k: np.array(v) for k, v in new_state.outputs.items()}
    for k, cols in old.layout.cols.items():
        old_y = np.asarray(state.outputs[k])
        for j, s in enumerate(cols):
            if s == old.layout.self_stream:
                continue
            try:
                side, k2, i = new.layout.locate(s)
            except UnknownStreamError:
                continue
            if k == "network":  # matrix-valued streams: entries move with their ports
                outs[k2][i] = _carry_network(new, old, old_y[j], outs[k2][i])
                continue
            if old_y[j].shape != outs[k2][i].shape:
                raise ProgramError(f"stream {s!r} changed shape from {old_y[j].shape} to {outs[k2][i].shape}")
            outs[k2][i] = old_y[j]
    if new.layout.self_stream is not None:
        _, k, j = new.layout.locate(new.layout.self_stream)
        base = new.network.flatten({kk: np.asarray(w) for kk, w in new.matrices(new_params).items()})
        if old.layout.self_stream is not None:
            # the running matrix: entries that are nonzero or links of the old program keep their running value
            # (a link a live edit set to zero stays zero); the other entries take the new program's weights
            running = np.asarray(old.read(state, old.layout.self_stream))
            keep = running != 0
            for link in old.program.links:
                keep[old.network.index(link.src, link.dst)] = True
            base = _carry_network(new, old, running, base, keep)
        outs[k][j] = base
    return new_params, new_state._replace(
        outputs={k: jnp.asarray(v, new.dtype) for k, v in outs.items()}, cycle=jnp.asarray(state.cycle)
    )

def _carry_network(new: Machine, old: Machine, value: Any, base: Any, keep: Any = None) -> np.ndarray:
    """A NETWORK-kind value of `old` mapped onto `new`'s network layout by port names: every entry
    between ports both machines have takes `value`'s entry (where the boolean value `keep` is true, if given),
    the others keep `base`'s."""
    out = np.array(base, dtype=np.float64)
    value = np.asarray(value)
    for name, _, n_old, off_old in old.network.blocks:
        if name not in new.network.rows:
            continue
        pairs = []
        for side in ("rows", "cols"):
            new_index = {s: i for i, s in enumerate(getattr(new.network, side)[name])}
            hits = [(i, new_index[s]) for i, s in enumerate(getattr(old.network, side)[name]) if s in new_index]
            pairs.append(np.asarray(hits, np.int64).reshape(-1, 2))
        (ro, rn), (co, cn) = pairs[0].T, pairs[1].T
        n_new, off_new = next((b[2], b[3]) for b in new.network.blocks if b[0] == name)
        src = (ro[:, None], co[None, :]) if value.ndim == 2 else (off_old + ro[:, None] * n_old + co[None, :],)
        dst = (rn[:, None], cn[None, :]) if out.ndim == 2 else (off_new + rn[:, None] * n_new + cn[None, :],)
        out[dst] = value[src] if keep is None else np.where(np.asarray(keep)[src], value[src], out[dst])
    return out

def _has_entry(new: Machine, src: str, dst: str) -> bool:
    try:
        new.entry(src, dst)
        return True
    except (ProgramError, UnknownStreamError):
        return False

def _transfer_neuron_params(new: Machine, old: Machine, old_np: Params, new_np: Params) -> Params:
    out = {g.id: {p: np.array(v) for p, v in new_np[g.id].items()} for g in new.layout.groups}
    where_old = {n: (g, i) for g in old.layout.groups for i, n in enumerate(g.members)}
    for g in new.layout.groups:
        for i, n in enumerate(g.members):
            if n in where_old and where_old[n][0].type == g.type:
                og, oi = where_old[n]
                for p in out[g.id]:
                    out[g.id][p][i] = np.asarray(old_np[og.id][p])[oi]
    return {gid: {p: jnp.asarray(v) for p, v in d.items()} for gid, d in out.items()}

