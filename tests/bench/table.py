"""One row per figure: what was measured, its target, the value, and whether it was met."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

# `met` is None for a figure shown for context (a floor, an alternative) or not measured.
VERDICTS = {True: "met", False: "NOT MET", None: "-"}


@dataclass(frozen=True)
class Row:
    item: str  # the numbering: "1", "3", …
    figure: str
    target: str
    measured: str
    met: bool | None = None
    note: str = ""


def info(item: str, figure: str, measured: str, note: str = "") -> Row:
    return Row(item, figure, "", measured, None, note)


def not_measured(item: str, figure: str, target: str, reason: str) -> Row:
    return Row(item, figure, target, f"not measured: {reason}", None)


def _cells(row: Row) -> list[str]:
    return [row.item, row.figure, row.target, row.measured, VERDICTS[row.met], row.note]


HEADER = ["#", "figure", "target", "measured", "verdict", "note"]


def render_text(rows: Sequence[Row]) -> str:
    table = [HEADER, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(rows: Sequence[Row]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    body = [line(HEADER), line(["---"] * len(HEADER))]
    body += [line(_cells(r)) for r in rows]
    return "\n".join(body)


def summary(rows: Sequence[Row]) -> str:
    judged = [r for r in rows if r.met is not None]
    missed = [r for r in judged if not r.met]
    skipped = [r for r in rows if r.measured.startswith("not measured")]
    text = f"{len(judged) - len(missed)} of {len(judged)} targets met"
    if missed:
        text += "; not met: " + ", ".join(f"#{r.item} {r.figure}" for r in missed)
    if skipped:
        text += f"; {len(skipped)} not measured"
    return text


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"


def ratio(value: float) -> str:
    return f"{value:.2f}x"


def mib(value: float) -> str:
    return f"{value:.0f} MiB"


def load() -> str:
    """The machine's load average now (1, 5, 15 minutes): a ratio measured on a busy machine
    says how busy it was."""
    return "load " + "/".join(f"{figure:.1f}" for figure in os.getloadavg())
