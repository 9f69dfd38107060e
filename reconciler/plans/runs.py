"""Which run of a job a pass converges.  A run is one execution of a job; its id is in every
batch's metadata, so runs are found in the live list, and a lost state loses none of them.

Run ids are deterministic wherever they can be, so whoever notices a run first creates it and
everyone else finds it live: a schedule's slot is its UTC instant (`2026-12-01T01:00:00Z`),
`spec.run` is its own id, and `--replace` adds the command's stamp (`<base>+20261201T101500.250Z`),
taken once per command: every pass of `reconcile --wait` converges the same new run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from reconciler.api.batch import LiveBatch
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.plans.changes import DesiredJob, PlanContext, Slot
from reconciler.state.model import PendingCreate

_SIMPLE_LABEL = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SLOT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@dataclass(frozen=True)
class RunChoice:
    run: str | None  # the run this pass converges; None: none yet
    fresh: bool = True  # whether first attempts may be created in it (not in a run left behind)
    cancel_other_runs: bool = True  # running batches of other runs are superseded
    started_by: str = ""  # "schedule" or "replace" when this pass starts the run
    note: str = ""  # why no run starts now, or what the new run runs alongside
    missed: str | None = None  # the slot skipped for its starting_deadline (a run id)


def label_run(label: str | None) -> str:
    """The run id `spec.run` asks for: the label itself when it is short and plain, else its hash."""
    if label is None:
        return DEFAULT_RUN
    return label if _SIMPLE_LABEL.match(label) else "h" + hashlib.sha256(label.encode()).hexdigest()[:16]


def slot_run(slot: datetime) -> str:
    return slot.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(now: datetime) -> str:
    """To the millisecond: two commands in one second each start their own run."""
    instant = now.astimezone(UTC)
    return instant.strftime("%Y%m%dT%H%M%S") + f".{instant.microsecond // 1000:03d}Z"


def run_base(run: str) -> str:
    return run.partition("+")[0]


def shown_run(run: str, timezone: str = "UTC") -> str:
    """A slot's run as the slot's local time; any other run as its id."""
    base, plus, rest = run.partition("+")
    if not _SLOT.match(base):
        return run
    local = datetime.strptime(base, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).astimezone(ZoneInfo(timezone))
    return local.isoformat() + (f" (re-run {rest})" if plus else "")


def file_part(run: str) -> str:
    """A run id as one piece of a file name: `2026-12-01T010000Z`."""
    return run.replace(":", "").replace("+", "-")


def newest(runs: Iterable[str]) -> str | None:
    """Slots in time order, after the other runs; a replacement after the run it replaced."""
    found = sorted(runs, key=lambda r: (bool(_SLOT.match(run_base(r))), run_base(r), r.partition("+")[2]))
    return found[-1] if found else None


def runs_of(live: Sequence[LiveBatch], pending: Iterable[PendingCreate]) -> set[str]:
    return {b.run for b in live} | {p.run or DEFAULT_RUN for p in pending}


def choose_run(
    desired: DesiredJob, live: Sequence[LiveBatch], pending: Iterable[PendingCreate], ctx: PlanContext
) -> RunChoice:
    runs = runs_of(live, pending)
    slot = desired.schedule
    due = slot_run(slot.due) if slot and slot.due else None
    if desired.name in ctx.replace:
        return RunChoice(f"{due or desired.run_label}+{ctx.stamp}", started_by="replace")
    if slot is None:
        return RunChoice(newest(r for r in runs if run_base(r) == desired.run_label) or desired.run_label)
    current = newest(r for r in runs if due and run_base(r) == due)
    if current:
        return RunChoice(current, cancel_other_runs=slot.concurrency_policy == "replace")
    return _new_slot(slot, due, live, newest(runs))


def _new_slot(slot: Slot, due: str | None, live: Sequence[LiveBatch], last: str | None) -> RunChoice:
    upcoming = f"next run {_local(slot.next, slot)}" if slot.next else "no later slot"
    if due is None or slot.due is None or slot.now is None:
        return RunChoice(last, fresh=False, note=upcoming)
    late = (slot.now - slot.due).total_seconds()
    if slot.starting_deadline is not None and late > slot.starting_deadline:
        note = (
            f"slot {_local(slot.due, slot)} skipped: missed by {duration(late)} "
            f"(starting_deadline {duration(slot.starting_deadline)}); {upcoming}"
        )
        return RunChoice(last, fresh=False, note=note, missed=due)
    still = sorted({b.run for b in live if not b.terminal})
    if not still:
        return RunChoice(due, cancel_other_runs=False, started_by="schedule")
    others = ", ".join(shown_run(r, slot.timezone) for r in still)
    policy = slot.concurrency_policy
    if policy == "forbid":
        note = f"slot {_local(slot.due, slot)} waits: run {others} still runs (concurrency_policy forbid)"
        return RunChoice(last, fresh=False, note=note)
    note = f"run {others} still runs (concurrency_policy {policy})"
    return RunChoice(due, cancel_other_runs=policy == "replace", started_by="schedule", note=note)


def _local(instant: datetime | None, slot: Slot) -> str:
    return instant.astimezone(ZoneInfo(slot.timezone)).isoformat() if instant else "-"


def duration(seconds: float) -> str:
    """`2h`, `1d 3h`, `45m`, `30s`: the two largest units."""
    left = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2])


def slot_after(slot: Slot) -> timedelta | None:
    """How long until the next slot, as of `now`."""
    if slot.next is None or slot.now is None:
        return None
    return slot.next - slot.now
