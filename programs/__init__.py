"""Canonical DMM programs, each a function returning a `dmm.Program`.

Each builder is declared in the ``dmm.programs`` entry-point group (`pyproject.toml`), which is how ``dmm programs``
lists them and ``dmm run NAME`` finds them (`dmm.registered_programs`)."""

from .attention import associative_recall as associative_recall
from .attention import attention_rewiring as attention_rewiring
from .attention import recall_inputs as recall_inputs
from .detector import duplicate_detector as duplicate_detector
from .selfref import async_counter as async_counter
from .selfref import fluid_entry as fluid_entry
from .selfref import lightweight_oscillator as lightweight_oscillator
from .selfref import lightweight_wave as lightweight_wave
from .selfref import live_edit_counter as live_edit_counter
from .selfref import matrix_wave as matrix_wave
from .selfref import self_extinguishing as self_extinguishing
from .synthesis import synthesis_network as synthesis_network
from .transformer import generate as generate
from .transformer import transformer as transformer
