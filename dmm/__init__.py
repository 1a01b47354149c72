"""dmm: a functional JAX runtime for dataflow matrix machines.

A DMM is a recurrent network whose neurons exchange streams of vectors (or matrices, or keyed V-values). Each cycle
has two strokes: the down movement X = W·Y routes every output to the inputs through the network matrix W (rows =
input ports, columns = output ports), and the up movement Y = F(X) applies every neuron's function. Write a
`Program`, `compile` it to a `Machine`, `run` it to get a `Trace`.

This package is the core runtime. The layers above it are subpackages imported on their own: `dmm.files` (program
files, traces, checkpoints), `dmm.train` (training on optax), `dmm.sparsify` (pruning and sparsification),
`dmm.plot` (figures and text tables) and `dmm.cli` (the ``dmm`` command).
"""

from .blocks import Block as Block
from .blocks import Ports as Ports
from .errors import DMMError as DMMError
from .errors import FileFormatError as FileFormatError
from .errors import NonFiniteError as NonFiniteError
from .errors import ProgramError as ProgramError
from .errors import UnknownStreamError as UnknownStreamError
from .kinds import NETWORK as NETWORK
from .kinds import NUMBER as NUMBER
from .kinds import Kind as Kind
from .latency import align as align
from .latency import check_cycles as check_cycles
from .latency import check_rows as check_rows
from .latency import depths as depths
from .latency import first_cycle as first_cycle
from .layout import Layout as Layout
from .layout import NetworkLayout as NetworkLayout
from .neuron import Context as Context
from .neuron import Neuron as Neuron
from .neuron import NeuronType as NeuronType
from .neuron import Port as Port
from .neuron import lookup as lookup
from .neuron import make_type as make_type
from .neuron import matrix_entries as matrix_entries
from .neuron import neuron_type as neuron_type
from .neuron import registered_types as registered_types
from .program import Link as Link
from .program import Program as Program
from .registry import ProgramInfo as ProgramInfo
from .registry import describe_programs as describe_programs
from .registry import register_program as register_program
from .registry import registered_programs as registered_programs
from .trace import Trace as Trace

# The names below need JAX; they load on first use (PEP 562), so that writing programs, reading saved traces and
# the command line's quick commands never pay for importing JAX.
_LAZY = {
    "BatchTrace": "batch", "run_batch": "batch", "stack_trees": "batch",
    "compile": "compiler",
    "Machine": "machine", "Params": "machine", "State": "machine",
    "transfer": "growth",
    "backends": None, "remat": None, "vvalues": None,  # submodules
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'dmm' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
    value = module if _LAZY[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"
