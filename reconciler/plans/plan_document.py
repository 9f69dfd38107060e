"""The plan document: what `plan --json` prints and `plan --out` saves, and the check that a
saved plan still holds before `apply FILE` carries it out.  Plain data in, plain data out.

Each change carries its reason three ways: `reason` in words (plans/wording.py),
`reason_code` and `reason_data` (the code's fields, as plans/reasons.py names them) for a
program to branch on; a change over a budget has `over_budget` in words and
`over_budget_data`.  Both are additive: the format stays version 1.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from reconciler.common.errors import PlanRefusedError, UserError
from reconciler.plans.changes import Action, Change, CostEstimate, Plan
from reconciler.plans.cost import plan_total
from reconciler.plans.wording import (
    budget_warning,
    change_words,
    over_budget_lines,
    over_budget_words,
    upcoming_words,
)

PLAN_FORMAT_VERSION = 1
_STAMP = re.compile(r"^\d{8}T\d{6}(\.\d{3})?Z$")


def plan_document(
    plan: Plan,
    *,
    owner_tag: str,
    lineage: str,
    targets: frozenset[str] | None = None,
    replace: frozenset[str] = frozenset(),
    stamp: str | None = None,
) -> dict[str, Any]:
    """The `plan --json` / `--out` document: plain data, no secrets.  `targets`, `replace` and
    `stamp` (what names the runs `replace` starts) are what `apply FILE` plans again with."""
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "owner": owner_tag,
        "lineage": lineage,
        "targets": sorted(targets) if targets is not None else None,
        "replace": sorted(replace),
        "stamp": stamp if replace else None,
        "changes": [change_dict(c) for c in plan.changes],
        "summary": {a.value: sum(1 for c in plan.changes if c.action is a) for a in Action},
        "cost": estimate_dict(plan_total(plan)),
        "over_budget": over_budget_lines(plan.changes),
        "warnings": [budget_warning(w) for w in plan.warnings],
        "notes": list(plan.notes),
        "price_table": [
            {"taken": u.taken.isoformat(), "age_days": u.age_days, "stale": u.stale, "models": list(u.models)}
            for u in plan.table_prices
        ],
    }


def saved_scope(document: dict[str, Any]) -> tuple[frozenset[str] | None, frozenset[str], str | None]:
    """(targets, replace, stamp) a saved plan was made with: applied, it starts the very runs it
    showed, and applied again it finds them live instead of starting more.  A plan saved before
    stamps were kept has none (None): apply names the runs then."""
    targets, replace = document.get("targets"), document.get("replace") or []
    stamp = document.get("stamp")
    names = [*(targets or []), *replace]
    if not isinstance(replace, list) or (targets is not None and not isinstance(targets, list)):
        raise UserError("saved plan: targets and replace must be lists of job names")
    if not all(isinstance(n, str) for n in names):
        raise UserError("saved plan: targets and replace must be lists of job names")
    if stamp is not None and not (isinstance(stamp, str) and _STAMP.match(stamp)):
        raise UserError("saved plan: stamp must be a time like 20261201T101500.250Z")
    return (frozenset(targets) if targets is not None else None), frozenset(replace), stamp


def change_dict(change: Change) -> dict[str, Any]:
    return {
        "job": change.job,
        "action": change.action.value,
        "reason": change_words(change),
        "reason_code": change.reason.code.value,
        "reason_data": _data(change.reason),
        "provider": change.provider,
        "generation": change.generation,
        "cancel": list(change.cancel),
        "adopt": list(change.adopt),
        "requests": change.requests,
        "model": change.model,
        "run": change.run,
        "next_run": upcoming_words(change.next_run) if change.next_run else None,
        "launch": {"requests": change.launch_requests, "estimated_input_tokens": change.launch_tokens},
        "cost": estimate_dict(change.estimate),
        "reused": _data(change.reused) if change.reused else None,
        "saved_by_reuse": estimate_dict(change.saved),
        "over_budget": over_budget_words(change.over_budget) if change.over_budget else None,
        "over_budget_data": _data(change.over_budget) if change.over_budget else None,
        "queued": _data(change.queued) if change.queued else None,
    }


def _data(value: Any) -> dict[str, Any]:
    """A dataclass's fields as JSON data (tuples as lists)."""
    data: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(value), default=str))
    return data


def estimate_dict(estimate: CostEstimate | None) -> dict[str, Any] | None:
    """USD figures are null where unknown: no price, or output with no bound."""
    if estimate is None:
        return None
    return {
        "input_tokens": estimate.input_tokens,
        "max_output_tokens": estimate.output_tokens,
        "input_usd": estimate.input_usd,
        "max_output_usd": estimate.output_usd,
        "max_usd": estimate.upper_usd,
    }


def checked_document(document: object, path: str) -> dict[str, Any]:
    """A saved plan as read from `path`, or a UserError saying what is wrong with it."""
    if not isinstance(document, dict) or document.get("format_version") != PLAN_FORMAT_VERSION:
        raise UserError(f"{path}: not a saved plan of format_version {PLAN_FORMAT_VERSION}")
    if not isinstance(document.get("changes"), list):
        raise UserError(f"{path}: saved plan has no `changes` list")
    if not all(_well_formed(change) for change in document["changes"]):
        raise UserError(f"{path}: saved plan has a malformed change; save it again with `plan --out`")
    return document


def _well_formed(change: object) -> bool:
    """A change names its job, and lists batch ids as strings: what check_still_holds reads."""
    if not isinstance(change, dict) or not isinstance(change.get("job"), str):
        return False
    ids = [change.get("cancel") or [], change.get("adopt") or []]
    return all(isinstance(i, list) and all(isinstance(x, str) for x in i) for i in ids)


def check_still_holds(saved: dict[str, Any], fresh: Plan, *, owner_tag: str, path: str) -> None:
    """Refuses when the world moved since the plan was saved: apply does exactly what was shown."""
    if saved.get("owner") != owner_tag:
        raise PlanRefusedError(f"{path}: saved for owner tag {saved.get('owner')}, not {owner_tag}")
    then = {c["job"]: _key_of_dict(c) for c in saved["changes"] if c.get("action") != "noop"}
    now = {c.job: _key(c) for c in fresh.pending}
    for job in sorted(set(then) | set(now)):
        if then.get(job) != now.get(job):
            was = then[job][0] if job in then else "nothing"
            is_now = now[job][0] if job in now else "nothing"
            raise PlanRefusedError(
                f"{path}: saved plan no longer holds: {job} was to {was}, now needs {is_now}; "
                "run `reconciler plan --out` again"
            )


def _key(change: Change) -> tuple[Any, ...]:
    return (change.action.value, change.generation, sorted(change.cancel), sorted(change.adopt))


def _key_of_dict(change: dict[str, Any]) -> tuple[Any, ...]:
    return (
        change.get("action"),
        change.get("generation"),
        sorted(change.get("cancel") or []),
        sorted(change.get("adopt") or []),
    )
