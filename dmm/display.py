"""Rich display in notebooks: the compact HTML tables `Program`, `Machine` and `Trace` show in Jupyter."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any


def html_table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]], limit: int = 40) -> str:
    """An HTML table with a bold `title` line; at most `limit` rows, then a line saying how many were left out."""
    rows = list(rows)
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows[:limit]
    )
    more = f"<p>... and {len(rows) - limit} more</p>" if len(rows) > limit else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<p><b>{html.escape(title)}</b></p><table><tr>{head}</tr>{cells}</table>{more}"
