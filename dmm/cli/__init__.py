"""The ``dmm`` command: run programs, look at traces, plot them, list the program registry, run the demo.

    dmm demo                                   the duplicate detector, explained, with a figure (demo.png)
    dmm programs [-v]                          the registered programs, one line each
    dmm run PROGRAM [--steps N] [--record S,..] [--input NAME=FILE.npy] [--arg KEY=VALUE] [--out trace.npz]
    dmm show trace.npz [--streams S,..] [--cycles A:B] [--changes] [--list]
    dmm plot trace.npz [-o figure.png] [--streams S,..] [--cycles A:B]

PROGRAM is a program file (``NAME.json``, see `dmm.files.save_program`) or the name of a registered
program (`dmm.registered_programs`), whose parameters ``--arg key=value`` sets (values are converted to the types the
function declares; lists and dicts are written as JSON; see `dmm.cli.args`). Every mistake (bad arguments, missing
or malformed files, unknown programs or streams) ends with a one-line message on stderr and exit status 2. Progress
goes to stderr, results to stdout.

This is the outermost layer: one module per command (`run`, `show`, `plot`, `programs`, `demo`), the parser and
the error handling in `main`. It finds programs through the core's registry, never by importing `programs`, and
loads matplotlib only in the commands that draw.
"""

from .main import main as main
