"""Training network matrices and neuron parameters by backpropagation through time, on optax."""

from .trainer import Metrics as Metrics
from .trainer import MetricsLog as MetricsLog
from .trainer import ProgressBar as ProgressBar
from .trainer import Trainer as Trainer
from .trainer import TrainState as TrainState
from .trainer import count_links as count_links
from .trainer import stack_states as stack_states
from .trainer import unstack_state as unstack_state
