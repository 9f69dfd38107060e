"""Saved plan files: `plan --out FILE` writes one, `apply FILE` reads it (plans/document.py checks it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconciler.common import fileops
from reconciler.common.errors import UserError
from reconciler.plans.changes import Plan
from reconciler.plans.document import checked_document, plan_document


def save_plan(
    path: str,
    plan: Plan,
    *,
    owner_tag: str,
    lineage: str,
    targets: frozenset[str] | None = None,
    replace: frozenset[str] = frozenset(),
    stamp: str | None = None,
) -> None:
    document = plan_document(
        plan, owner_tag=owner_tag, lineage=lineage, targets=targets, replace=replace, stamp=stamp
    )
    fileops.write_bytes(Path(path), (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())


def load_plan(path: str) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        raise UserError(
            f"{path}: not a saved plan (unreadable or not JSON); save one with `plan --out`"
        ) from None
    return checked_document(document, path)
