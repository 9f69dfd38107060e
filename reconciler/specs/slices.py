"""A part of a job's input: a run of consecutive lines, as a byte range of the original file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PartSpec:
    """One slice of a job's input: lines [first_line, first_line + requests), bytes [start, end)."""

    index: int
    requests: int
    start: int = 0
    end: int = 0
    first_line: int = 1
    tokens: int = 0  # estimated prompt tokens, counted when cut to fit a queue limit; 0: not counted
