"""Terminal output for the CLI: aligned tables and colour on a terminal, tab-separated plain text in a pipe.

Nothing here knows about tsrevel's records; the commands turn them into rows of strings first.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import click

PASS, FAIL, INFO = "✓", "✗", "·"
CELL_LIMIT = 60  # a terminal table cell longer than this is cut with an ellipsis


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, terminal: bool | None = None) -> str:
    """Rows under headers: aligned and clipped on a terminal, tab-separated and complete otherwise."""
    terminal = stdout_is_terminal() if terminal is None else terminal
    cells = [[_cell(v) for v in row] for row in rows]
    if not terminal:
        return "\n".join("\t".join(line) for line in [list(headers), *cells])
    clipped = [[_clip(c) for c in row] for row in cells]
    widths = [max([len(h), *(len(row[i]) for row in clipped)]) for i, h in enumerate(headers)]
    lines = ["  ".join(click.style(h.ljust(w), bold=True) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in clipped]
    return "\n".join(lines)


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, empty: str = "(none)") -> None:
    if not rows:
        click.echo(empty)
        return
    click.echo(table(headers, rows))


def mark(ok: bool | None) -> str:
    """✓ (green), ✗ (red) or · for information only; click drops the colour in a pipe."""
    if ok is None:
        return INFO
    return click.style(PASS, fg="green") if ok else click.style(FAIL, fg="red", bold=True)


@contextlib.contextmanager
def progress(length: int, label: str) -> Iterator[Any]:
    """A progress bar on stderr (stdout stays clean for pipes); click prints just the label off a terminal."""
    with click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True) as bar:
        yield bar


def when(value: datetime | None) -> str:
    """A moment as UTC to the second, or '-'."""
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def age(seconds: float | None) -> str:
    """A duration for people: 42s, 3m 12s, 5h 02m, 2d 07h."""
    if seconds is None:
        return "-"
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return when(value)
    return " ".join(str(value).split())  # one line per row, whatever the value held


def _clip(text: str) -> str:
    return text if len(text) <= CELL_LIMIT else text[: CELL_LIMIT - 1] + "…"
