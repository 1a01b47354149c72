"""`dmm.compile`: from a `Program` to a `Machine`.

Compilation numbers the ports (`dmm.layout`), lays out each kind's block of the network matrix with a down-movement
backend (`dmm.backends`: dense by default, ``"sparse"`` on request, or each block's preferred backend with
``backend="auto"``, the ELL backend for large blocks below 2 % density), stacks neuron parameters by
group, and traces one cycle abstractly (`jax.eval_shape`) so that a neuron type that returns the wrong ports or
shapes fails here, with its name, rather than deep inside a run. The cost is O(number of neurons) in NumPy plus
O(number of neuron groups) in tracing.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .backends import DENSE, Backend, registered_backends, resolve_backend
from .errors import ProgramError
from .kinds import Kind
from .layout import build_layout
from .machine import Machine
from .program import Program


PRECISIONS = ("default", "high", "highest")


def compile(
    program: Program, *, backend: str | Backend = "dense", dtype: Any = jnp.float32, precision: str = "highest"
) -> Machine:
    """Compile `program` into a `Machine`.

    **Arguments:**

    - `program`: the program (a snapshot is taken: later changes to it do not affect the machine).
    - `backend`: a registered backend's name or a `dmm.backends.Backend`: "dense" (every W_K a dense matrix),
      "sparse" (every block except the NETWORK kind's stores only its links, in ELL form; see `dmm.backends.ell`),
      or "auto" (each block takes the first registered backend that `prefers` it, else dense: the ELL backend for
      blocks of at least 65,536 entries below 2 % density). A program with a Self neuron is always dense: its
      running matrix can gain any entry.
    - `dtype`: the floating dtype of every stream and weight: float32 (default), float64 (needs
      ``jax.config.update("jax_enable_x64", True)``), or the 16-bit bfloat16 and float16. With 16-bit streams the
      down movement sums each product X = W·Y in float32 and rounds it once to the stream dtype; neuron functions
      compute in the stream dtype (a type may choose a wider one inside).
    - `precision`: matmul precision of the down movement and of the neurons' own matmuls that do not set one
      (``"highest"`` keeps float32 products exact on GPUs/TPUs too, where the default may round to TF32/bfloat16).
    """
    if not isinstance(program, Program):
        raise ProgramError(f"compile() takes a Program, not {type(program).__name__}")
    chosen_backend = resolve_backend(backend)
    if precision not in PRECISIONS:
        raise ProgramError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ProgramError(f"dtype must be a floating dtype, not {dtype}")
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ProgramError("dtype float64 needs jax.config.update('jax_enable_x64', True) first")
    program = program.copy()
    lay = build_layout(program)
    if lay.self_stream is not None and chosen_backend not in (None, DENSE):
        raise ProgramError(
            f"program has a Self neuron ({lay.self_stream!r}); its matrix is dense: use backend='dense', not {chosen_backend.name!r}"
        )

    row_ix = {k: {s: i for i, s in enumerate(r)} for k, r in lay.rows.items()}
    col_ix = {k: {s: j for j, s in enumerate(c)} for k, c in lay.cols.items()}
    kind_of = {s: k for k, c in lay.cols.items() for s in c}
    pairs, weights, trainable = program.link_columns()
    link_kind = np.asarray([kind_of[s] for s, _ in pairs], object)
    blocks = {}
    W: dict[str, Any] = {}
    mask: dict[str, Any] = {}
    for k in lay.kinds:
        shape = (len(lay.rows[k]), len(lay.cols[k]))
        sel = np.flatnonzero(link_kind == k)  # this kind's links, in program order
        rows = np.fromiter((row_ix[k][pairs[e][1]] for e in sel), np.int64, len(sel))
        cols = np.fromiter((col_ix[k][pairs[e][0]] for e in sel), np.int64, len(sel))
        vals, train = weights[sel], trainable[sel]
        b = DENSE
        if k != "network" and lay.self_stream is None and shape[0] * shape[1] > 0:
            if chosen_backend is not None:
                b = chosen_backend
            else:
                b = next((c for c in registered_backends().values() if c.prefers(shape, len(vals))), DENSE)
        blocks[k] = b.layout(rows, cols, shape)
        W[k] = jnp.asarray(b.store(blocks[k], vals, 0.0), dtype)
        mask[k] = jnp.asarray(b.store(blocks[k], train, False))

    neuron_params: dict[str, dict[str, Any]] = {}
    neuron_mask: dict[str, dict[str, Any]] = {}
    all_neurons = program.neurons
    for g in lay.groups:
        neuron_params[g.id] = {}
        for p, d in g.type.defaults.items():
            if isinstance(d, Kind):  # NETWORK-kind parameter: place each neuron's matrix entries
                values = [_network_value(lay, f"neuron {n!r}", f"parameter {p!r}", all_neurons[n].params[p]) for n in g.members]
                neuron_params[g.id][p] = jnp.asarray(np.stack(values), dtype)
            else:
                stacked = np.stack([all_neurons[n].params[p] for n in g.members])
                neuron_params[g.id][p] = jnp.asarray(stacked, dtype if d.dtype.kind == "f" else d.dtype)
        neuron_mask[g.id] = {p: jnp.full(v.shape, p in g.type.trainable) for p, v in neuron_params[g.id].items()}

    y0 = {k: np.zeros((len(lay.cols[k]), *kind.shape), dtype) for k, kind in lay.kinds.items()}
    for stream, v in program.initial.items():
        _, k, j = lay.locate(stream)
        y0[k][j] = _network_value(lay, f"stream {stream!r}", "initial value", v) if isinstance(v, tuple) else v

    machine = Machine(
        program,
        lay,
        blocks,
        dtype,
        getattr(jax.lax.Precision, precision.upper()),
        {"W": W, "neurons": neuron_params},
        {"W": mask, "neurons": neuron_mask},
        y0,
    )
    machine.check_cycle()
    return machine


def _network_value(lay, owner: str, what: str, entries) -> np.ndarray:
    """The NETWORK-kind value with the given matrix entries; errors name the neuron or stream they belong to."""
    if lay.network is None:
        raise ProgramError(f"{owner}: {what} is a network matrix, but the program has no NETWORK-kind port")
    try:
        return lay.network.delta(entries)
    except ProgramError as e:
        raise ProgramError(f"{owner}, {what}: {e}") from None
