"""Attention neurons for `dmm`: softmax attention over streams and matrix streams, key/value memory, fast-weight and
self-referential neurons, higher-order attention over the network matrix, and biologically oriented replacements
for the softmax weights (gamma-cycle race, oscillator synchrony, rate competition) with the study that measures
how close they come (`attention.bridge`, `docs/bridge.md`)."""

from . import bridge as bridge
from .fastweights import delta_rule as delta_rule
from .fastweights import linear_attention as linear_attention
from .fastweights import linear_matrix_attention as linear_matrix_attention
from .fastweights import srwm as srwm
from .fastweights import srwm_kind as srwm_kind
from .fastweights import srwm_type as srwm_type
from .functional import dot_product_attention as dot_product_attention
from .functional import dpfp as dpfp
from .functional import elu1 as elu1
from .higher_order import row_attention as row_attention
from .mechanisms import MECHANISMS as MECHANISMS
from .mechanisms import Mechanism as Mechanism
from .mechanisms import mechanism as mechanism
from .mechanisms import oscillator_weights as oscillator_weights
from .mechanisms import race_weights as race_weights
from .mechanisms import rate_weights as rate_weights
from .mechanisms import softmax_weights as softmax_weights
from .memory import add_with_state as add_with_state
from .memory import kv_memory as kv_memory
from .memory import memory_kind as memory_kind
from .softmax import attention as attention
from .softmax import attention_weights as attention_weights
from .softmax import matrix_attention as matrix_attention
from .tasks import RecallTask as RecallTask
from .tasks import recall_kinds as recall_kinds
from .tasks import recall_task as recall_task
