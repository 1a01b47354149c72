"""The neuron vocabulary of `dmm`: every type registered by name, each with its formula in its docstring."""

from .basic import accumulator as accumulator
from .basic import const as const
from .basic import external as external
from .basic import identity as identity
from .basic import sink as sink
from .basic import timer as timer
from .elementwise import maximum as maximum
from .elementwise import mult as mult
from .elementwise import plus as plus
from .elementwise import relu as relu
from .elementwise import sigmoid as sigmoid
from .elementwise import tanh as tanh
from .linear import linear as linear
from .reductions import compare as compare
from .reductions import dot as dot
from .reductions import max_norm as max_norm
from .text import chars_kind as chars_kind
from .text import text_input as text_input
from .selfref import add_self as add_self
from .selfref import constant_matrix as constant_matrix
from .selfref import edit_channel as edit_channel
from .selfref import self_matrix as self_matrix
