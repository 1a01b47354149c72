"""Training network matrices and neuron parameters by backpropagation through time, on optax.

- `state`: `TrainState`, `Metrics`, `count_links`, `stack_states`, `unstack_state`.
- `trainer`: `Trainer` (validation, init, the pure `train_step`/`eval_step` and their jitted `update`/`evaluate`).
- `through_self`: `SelfCarrier`, delivering updates through a running machine's Self neuron.
- `loop`: the host loop (`fit`, `fit_many`), which `Trainer.fit` and `Trainer.fit_many` call, and `BatchFn` (a
  batch function that runs inside the jitted steps).
- `callbacks`: `ProgressBar`, `MetricsLog` and the callbacks of `fit` (progress, metrics log, checkpoints).
"""

from .callbacks import Callback as Callback
from .callbacks import Chunk as Chunk
from .callbacks import LogMetrics as LogMetrics
from .callbacks import MetricsLog as MetricsLog
from .callbacks import ProgressBar as ProgressBar
from .callbacks import SaveCheckpoints as SaveCheckpoints
from .callbacks import ShowProgress as ShowProgress
from .loop import BatchFn as BatchFn
from .losses import accuracy as accuracy
from .losses import cross_entropy as cross_entropy
from .losses import per_position_cross_entropy as per_position_cross_entropy
from .losses import trace_accuracy as trace_accuracy
from .losses import trace_cross_entropy as trace_cross_entropy
from .losses import trace_logits as trace_logits
from .state import Metrics as Metrics
from .state import TrainState as TrainState
from .state import count_links as count_links
from .state import stack_states as stack_states
from .state import unstack_state as unstack_state
from .through_self import SelfCarrier as SelfCarrier
from .trainer import Trainer as Trainer
