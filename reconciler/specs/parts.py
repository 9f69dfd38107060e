"""Splitting a large input into parts that each fit the API's limits.

Deterministic: parts are consecutive runs of lines, cut greedily where the next line would
exceed `max_requests` or `max_bytes` (or, for embeddings, `max_inputs` embedding inputs; or,
to fit a model's queue limit, `max_tokens` estimated prompt tokens), so
the same input always splits the same way. Parts
are byte ranges of the original file; nothing is copied.  Cached like input digests, by
(path, size, mtime), so a 200 MB input is not re-read on every plan.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from reconciler.common import fileops
from reconciler.common.errors import Problem, SpecError
from reconciler.common.limits import InputLimits
from reconciler.specs.inputs.tokens import EMBEDDINGS, line_inputs, request_tokens
from reconciler.specs.slices import PartSpec

CACHE_NAME = "parts-cache.json"


def split_input(
    path: Path, limits: InputLimits, *, display: str, cache_dir: Path | None = None, endpoint: str = ""
) -> tuple[PartSpec, ...]:
    key = _cache_key(path, limits, endpoint)
    cached = _read_cache(cache_dir, key)
    if cached is not None:
        return cached
    parts = _split(path, limits, display, endpoint)
    _write_cache(cache_dir, key, parts)
    return parts


def _split(path: Path, limits: InputLimits, display: str, endpoint: str) -> tuple[PartSpec, ...]:
    counts_inputs = endpoint == EMBEDDINGS
    parts: list[PartSpec] = []
    start = offset = 0
    count = inputs = tokens = 0
    first_line = 1
    with path.open("rb") as stream:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                offset += len(line)
                continue
            if len(line) > limits.max_bytes:
                raise SpecError(
                    [
                        Problem(
                            display,
                            line_number,
                            "",
                            f"line is larger than split.max_bytes ({limits.max_bytes:,})",
                        )
                    ]
                )
            # Only embeddings lines are parsed: a request there may hold up to 2,048 inputs.
            line_count = line_inputs(line) if counts_inputs else 0
            line_tokens = _tokens(line, endpoint) if limits.max_tokens is not None else 0
            if count and (
                count >= limits.max_requests
                or offset + len(line) - start > limits.max_bytes
                or inputs + line_count > limits.max_inputs
                or (limits.max_tokens is not None and tokens + line_tokens > limits.max_tokens)
            ):
                parts.append(PartSpec(len(parts), count, start, offset, first_line, tokens))
                start, count, inputs, tokens, first_line = offset, 0, 0, 0, line_number
            count += 1
            inputs += line_count
            tokens += line_tokens
            offset += len(line)
    if count:
        parts.append(PartSpec(len(parts), count, start, offset, first_line, tokens))
    return tuple(parts)


def _tokens(line: bytes, endpoint: str) -> int:
    """A line's estimated prompt tokens (validated already: anything odd counts none)."""
    try:
        body = json.loads(line).get("body")
    except (ValueError, AttributeError):
        return 0
    return request_tokens(endpoint, body)[0] if type(body) is dict else 0


def _cache_key(path: Path, limits: InputLimits, endpoint: str) -> tuple[str, str]:
    """(the entry's name, what must match): one entry per input, so the cache cannot grow stale."""
    stat = path.stat()
    return str(path), json.dumps([stat.st_size, stat.st_mtime_ns, asdict(limits), endpoint])


def _read_cache(cache_dir: Path | None, key: tuple[str, str]) -> tuple[PartSpec, ...] | None:
    if cache_dir is None:
        return None
    try:
        entry = json.loads((cache_dir / CACHE_NAME).read_text(encoding="utf-8"))[key[0]]
        return tuple(PartSpec(**p) for p in entry["parts"]) if entry["stat"] == key[1] else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(cache_dir: Path | None, key: tuple[str, str], parts: tuple[PartSpec, ...]) -> None:
    if cache_dir is None:
        return
    path = cache_dir / CACHE_NAME
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        entries = entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        entries = {}
    entries[key[0]] = {"stat": key[1], "parts": [asdict(p) for p in parts]}
    fileops.write_bytes(path, json.dumps(entries, sort_keys=True).encode())
