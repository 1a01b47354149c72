"""Traces for people: figures (`plot_trace`, matplotlib, the ``plot`` extra; `figures.py`), the text tables the
command line prints (`trace_table`, `stream_list`, `format_value`; `tables.py`) and the choice of streams and cycles
both share (`select_streams`, `window`; `selection.py`). Importing it loads no matplotlib."""

from .figures import Panel as Panel
from .figures import panels as panels
from .figures import plot_trace as plot_trace
from .figures import require_matplotlib as require_matplotlib
from .selection import select_streams as select_streams
from .selection import window as window
from .tables import changed_rows as changed_rows
from .tables import format_number as format_number
from .tables import format_value as format_value
from .tables import stream_list as stream_list
from .tables import trace_table as trace_table
