"""Training through Self: the matrix being trained is the one the running machine holds in its Self neuron.

The program has a Self neuron and an update channel (an `edit_channel` linked into Self's delta input with a hard
weight-1 link). Each episode starts from the running matrix, and each optimizer update U is delivered as a
matrix-valued delta on the channel: the machine runs two more cycles with the channel emitting U, and its own Self
neuron adds it (W ← W + U). ``episodes="reset"`` starts each episode from the program's initial streams with the
running matrix (this matches ordinary training step for step); ``"continue"`` keeps the running machine going, so
it learns while it runs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from dmm import NETWORK, Machine, Params, ProgramError, State


class SelfCarrier:
    """Carries training through a running machine's Self neuron (see the module docstring).

    **Arguments:**

    - `machine`: the compiled `Machine` (with a Self neuron).
    - `channel`: the NETWORK-kind output stream of the update channel, e.g. ``"upd.out"``.
    - `episodes`: ``"reset"`` or ``"continue"``.
    - `batched`: the trainer's batching flag (training through Self runs one machine: it must be False).

    Raises `ProgramError` when the program or the options do not allow training through Self.
    """

    def __init__(self, machine: Machine, channel: str, episodes: str, *, batched: bool = False) -> None:
        m, lay = machine, machine.layout
        if lay.self_stream is None:
            raise ProgramError("Trainer: through_self needs a program with a Self neuron")
        if batched:
            raise ProgramError("Trainer: through_self trains one running machine; batched=True is not supported")
        if episodes not in ("reset", "continue"):
            raise ProgramError(f"Trainer: episodes must be 'reset' or 'continue', not {episodes!r}")
        side, k, _ = lay.locate(channel)
        if side != "out" or lay.kinds[k].name != NETWORK.name:
            raise ProgramError(f"Trainer: through_self={channel!r} must be a NETWORK-kind output port (an update channel)")
        self_name = lay.self_stream.split(".")[0]
        ports = m.program.neuron(self_name).type.inputs
        accum, delta = f"{self_name}.{ports[0].name}", f"{self_name}.{ports[1].name}"
        if m.weight(channel, delta) != 1.0 or m.weight(lay.self_stream, accum) != 1.0:
            raise ProgramError(
                f"Trainer: through_self needs weight-1 links {channel!r} -> {delta!r} and {lay.self_stream!r} -> {accum!r}"
            )
        if m.trainable["W"][k][m.entry(channel, delta)[1]] or m.trainable["W"][k][m.entry(lay.self_stream, accum)[1]]:
            raise ProgramError("Trainer: the update channel's and Self's own links must be hard (trainable=False)")
        self.machine, self.channel, self.episodes = m, channel, episodes

    def init(self, params: Params) -> State:
        """The running machine at step 0: ``machine.init_state(params)``."""
        return self.machine.init_state(params)

    def variables(self, params: Params, run: State) -> Params:
        """The parameters in force: `params` with ``params["W"]`` replaced by the matrix Self holds in `run`."""
        return {**params, "W": self.machine.matrices(params, run)}

    def start(self, var: Params, run: State) -> State:
        """The state an episode starts from, for the parameters in force `var` and the running machine `run`:
        the program's initial streams (``"reset"``) or `run` itself (``"continue"``), Self holding ``var["W"]``."""
        m = self.machine
        if self.episodes == "reset":
            return m.init_state(var)
        return m.write(run, m.layout.self_stream, m.network.flatten(var["W"], jnp))

    def first_cycle(self, run: State) -> int:
        """The cycle after which the next episode's cycles are counted (for error messages): 0 when episodes reset,
        else the running machine's cycle (an int; `run` must be concrete)."""
        return 0 if self.episodes == "reset" else int(run.cycle)

    def deliver(
        self, var: Params, params: Params, final: State, updates: Params, key: jax.Array | None
    ) -> tuple[State, Params]:
        """Deliver the optimizer's `updates` (shaped like `params`) through the machine (pure).

        **Arguments:** `var`: the parameters of the episode; `params`: the `TrainState`'s parameters; `final`: the
        episode's final state; `updates`: the masked optimizer updates; `key`: the step's PRNG key (or None).

        **Returns:** the running machine after two more cycles (the channel emits U, then Self adds it) and the new
        parameters (``"W"`` read back from Self, the neuron parameters updated directly).
        """
        m = self.machine
        u = m.network.flatten(updates["W"], jnp).astype(m.dtype)
        feed = {self.channel: jnp.stack([u, jnp.zeros_like(u)])}
        run, _, _ = m.simulate(var, final, feed, key, steps=2, record=(), remat="none")
        neurons: Any = optax.apply_updates(var["neurons"], updates["neurons"])
        return run, {**params, "W": m.matrices(params, run), "neurons": neurons}
