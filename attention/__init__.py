"""Attention neurons for `dmm`: softmax attention over streams and matrix streams, key/value memory, fast-weight and
self-referential neurons, higher-order attention over the network matrix, and biologically oriented replacements
for the softmax weights (gamma-cycle race, oscillator synchrony, rate competition), one registered `Mechanism` each
(`attention.mechanisms`; other packages add theirs with `register_mechanism`). How close they come to softmax is
measured by the bridge study, `benchmarks/bridge.py` (`docs/bridge.md`)."""

from .fastweights import beta_kind as beta_kind
from .fastweights import delta_matrix_attention as delta_matrix_attention
from .fastweights import delta_rule as delta_rule
from .fastweights import fast_weights_kind as fast_weights_kind
from .fastweights import linear_attention as linear_attention
from .fastweights import linear_matrix_attention as linear_matrix_attention
from .fastweights import linear_state_kind as linear_state_kind
from .fastweights import srwm as srwm
from .fastweights import srwm_init as srwm_init
from .fastweights import srwm_kind as srwm_kind
from .fastweights import srwm_matrix as srwm_matrix
from .fastweights import srwm_type as srwm_type
from .functional import dot_product_attention as dot_product_attention
from .functional import dpfp as dpfp
from .functional import elu1 as elu1
from .higher_order import row_attention as row_attention
from .mechanisms import COUNT as COUNT
from .mechanisms import FRACTION as FRACTION
from .mechanisms import MECHANISMS as MECHANISMS
from .mechanisms import POSITIVE as POSITIVE
from .mechanisms import Check as Check
from .mechanisms import Mechanism as Mechanism
from .mechanisms import Oscillator as Oscillator
from .mechanisms import Race as Race
from .mechanisms import Rate as Rate
from .mechanisms import Softmax as Softmax
from .mechanisms import choice as choice
from .mechanisms import mechanism as mechanism
from .mechanisms import option as option
from .mechanisms import oscillator_weights as oscillator_weights
from .mechanisms import race_weights as race_weights
from .mechanisms import rate_weights as rate_weights
from .mechanisms import register_mechanism as register_mechanism
from .mechanisms import registered_mechanisms as registered_mechanisms
from .mechanisms import softmax_weights as softmax_weights
from .memory import add_with_state as add_with_state
from .memory import kv_memory as kv_memory
from .memory import memory_kind as memory_kind
from .mixers import MIXERS as MIXERS
from .mixers import DeltaMixer as DeltaMixer
from .mixers import DotProductMixer as DotProductMixer
from .mixers import LinearMixer as LinearMixer
from .mixers import Mixer as Mixer
from .mixers import SRWMMixer as SRWMMixer
from .mixers import mixer as mixer
from .mixers import register_mixer as register_mixer
from .mixers import registered_mixers as registered_mixers
from .softmax import attention as attention
from .softmax import attention_weights as attention_weights
from .softmax import matrix_attention as matrix_attention
from .tasks import RecallTask as RecallTask
from .tasks import recall_kinds as recall_kinds
from .tasks import recall_task as recall_task
from .tasks import mqar as mqar
