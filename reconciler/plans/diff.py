"""What changed between two definitions of a job, field by field, for a reviewer to read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_SHOWN_CHARS = 40


def changed_fields(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], by_custom_id: Mapping[str, Any] | None = None
) -> list[str]:
    """`endpoint: /v1/completions → /v1/chat/completions`, one per changed leaf; the input as
    request counts and a short digest, and with `by_custom_id` (specs/inputs/index.compare)
    the requests added, removed and changed."""
    if not old:
        return []
    flat_old, flat_new = _flatten(old), _flatten(new)
    lines = []
    for key in sorted(set(flat_old) | set(flat_new)):
        if key.startswith("input.") or flat_old.get(key) == flat_new.get(key):
            continue
        lines.append(f"{key}: {_show(flat_old.get(key))} → {_show(flat_new.get(key))}")
    lines += _input_change(old.get("input"), new.get("input"), by_custom_id)
    return lines


def _input_change(old: Any, new: Any, by_custom_id: Mapping[str, Any] | None) -> list[str]:
    if not isinstance(old, dict) or not isinstance(new, dict) or old.get("sha256") == new.get("sha256"):
        return []
    before, after = _count(old.get("requests")), _count(new.get("requests"))
    counts = f"{after} requests" if before == after else f"{before} → {after} requests"
    digests = f"sha256 {str(old.get('sha256'))[:8]}… → {str(new.get('sha256'))[:8]}…"
    return [f"input: {counts}, {digests}" + _by_custom_id(by_custom_id)]


def _by_custom_id(summary: Mapping[str, Any] | None) -> str:
    """` (1 added: req-41; 2 changed: req-3, req-7 … by custom_id)`."""
    if not summary:
        return ""
    examples = summary.get("examples") or {}
    parts = []
    for kind in ("added", "removed", "changed"):
        if summary.get(kind):
            ids = ", ".join(_show(i) for i in examples.get(kind, []))
            more = " …" if summary[kind] > len(examples.get(kind, [])) else ""
            parts.append(f"{summary[kind]:,} {kind}" + (f": {ids}{more}" if ids else ""))
    return f" ({'; '.join(parts)} by custom_id)" if parts else " (the same requests, by custom_id)"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    text = str(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "…"
