"""dmm: a functional JAX runtime for dataflow matrix machines.

A DMM is a recurrent network whose neurons exchange streams of vectors (or matrices, or keyed V-values). Each cycle
has two strokes: the down movement X = W·Y routes every output to the inputs through the network matrix W (rows =
input ports, columns = output ports), and the up movement Y = F(X) applies every neuron's function. Write a
`Program`, `compile` it to a `Machine`, `run` it to get a `Trace`.

This package is the core runtime. The layers above it are subpackages imported on their own: `dmm.files` (program
files, traces, checkpoints), `dmm.train` (training on optax), `dmm.sparsify` (pruning and sparsification),
`dmm.plot` (figures and text tables) and `dmm.cli` (the ``dmm`` command).
"""

from .batch import BatchTrace as BatchTrace
from .batch import run_batch as run_batch
from .batch import stack_trees as stack_trees
from .compile import compile as compile
from .errors import DMMError as DMMError
from .errors import FileFormatError as FileFormatError
from .errors import NonFiniteError as NonFiniteError
from .errors import ProgramError as ProgramError
from .errors import UnknownStreamError as UnknownStreamError
from .kinds import NETWORK as NETWORK
from .kinds import NUMBER as NUMBER
from .kinds import Kind as Kind
from .layout import Layout as Layout
from .layout import NetworkLayout as NetworkLayout
from .machine import Machine as Machine
from .machine import Params as Params
from .machine import State as State
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
from .registry import register_program as register_program
from .registry import registered_programs as registered_programs
from .trace import Trace as Trace
from . import backends as backends
from . import remat as remat
from . import vvalues as vvalues
from .growth import transfer as transfer


__version__ = "0.1.0"
