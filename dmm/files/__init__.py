"""File formats: program files, traces and training checkpoints, written atomically and read without pickle.

This layer sits on the core (`dmm`); nothing in the core imports it.
"""

from .checkpoints import load_checkpoint as load_checkpoint
from .checkpoints import read_checkpoint_meta as read_checkpoint_meta
from .checkpoints import save_checkpoint as save_checkpoint
from .programs import load_program as load_program
from .programs import save_program as save_program
from .traces import load_trace as load_trace
from .traces import save_trace as save_trace
