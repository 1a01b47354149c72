"""File formats: program files, traces and training checkpoints, each one file written as one atomic commit and read
without pickle, within bounds (`Limits`), every failure a `dmm.FileFormatError` naming the file and the field.

This layer sits on the core (`dmm`); nothing in the core imports it. docs/files.md describes the formats.
"""

from .atomic import DEFAULT_LIMITS as DEFAULT_LIMITS
from .atomic import Limits as Limits
from .checkpoints import checkpoint_path as checkpoint_path
from .checkpoints import list_checkpoints as list_checkpoints
from .checkpoints import load_checkpoint as load_checkpoint
from .checkpoints import read_checkpoint_meta as read_checkpoint_meta
from .checkpoints import save_checkpoint as save_checkpoint
from .programs import load_program as load_program
from .programs import save_program as save_program
from .traces import load_trace as load_trace
from .traces import save_trace as save_trace
