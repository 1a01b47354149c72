"""Figures of traces (matplotlib, the ``plot`` extra) and the text formatting the command line shares."""

from .figures import Panel as Panel
from .figures import format_number as format_number
from .figures import format_value as format_value
from .figures import panels as panels
from .figures import plot_trace as plot_trace
from .figures import require_matplotlib as require_matplotlib
from .figures import select_streams as select_streams
from .figures import window as window
