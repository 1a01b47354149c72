"""dmm: a functional JAX runtime for dataflow matrix machines.

A DMM is a recurrent network whose neurons exchange streams of vectors (or matrices, or keyed V-values). Each cycle
has two strokes: the down movement X = W·Y routes every output to the inputs through the network matrix W (rows =
input ports, columns = output ports), and the up movement Y = F(X) applies every neuron's function. Write a
`Program`, `compile` it to a `Machine`, `run` it to get a `Trace`.
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
from .files import load_program as load_program
from .files import save_program as save_program
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
from .plot import plot_trace as plot_trace
from .program import Link as Link
from .program import Program as Program
from .trace import Trace as Trace
from .checkpoint import load_checkpoint as load_checkpoint
from .checkpoint import read_checkpoint_meta as read_checkpoint_meta
from .checkpoint import save_checkpoint as save_checkpoint
from .sparsify import SearchConfig as SearchConfig
from .sparsify import SparsifyConfig as SparsifyConfig
from .sparsify import SparsifyReport as SparsifyReport
from .sparsify import SwapConfig as SwapConfig
from .sparsify import link_names as link_names
from .sparsify import links_mask as links_mask
from .sparsify import live_links as live_links
from .sparsify import prune as prune
from .sparsify import regrow as regrow
from .sparsify import regrow_gains as regrow_gains
from .sparsify import search_sparsify as search_sparsify
from .sparsify import smallest_links as smallest_links
from .sparsify import sparsify as sparsify
from .sparsify import swap_sparsify as swap_sparsify
from .train import Metrics as Metrics
from .train import MetricsLog as MetricsLog
from .train import ProgressBar as ProgressBar
from .train import Trainer as Trainer
from .train import TrainState as TrainState
from .train import count_links as count_links
from .train import stack_states as stack_states
from .train import unstack_state as unstack_state
from . import vvalues as vvalues


load_trace = Trace.load

__version__ = "0.1.0"
