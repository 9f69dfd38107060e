"""Which run of a job a pass converges.  A run is one execution of a job; its id is in every
batch's metadata, so runs are found in the live list, and a lost state loses none of them.

Run ids are deterministic wherever they can be, so whoever notices a run first creates it and
everyone else finds it live: a schedule's slot is its UTC instant (`2026-12-01T01:00:00Z`),
`spec.run` is its own id, and `--replace` adds the command's stamp (`<base>+20261201T101500.250Z`),
taken once per command: every pass of `reconcile --wait` converges the same new run.
A run is made from one generation: a spec edited after its run began gets a run of its own,
`<base>+g<generation>`, so two runs never share an id (nor a results file named after it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from reconciler.common.ownership import DEFAULT_RUN
from reconciler.plans.changes import DesiredJob, LiveBatch, PlanContext, Slot
from reconciler.plans.reasons import EditWaits, NextRun, Reason, SlotMissed, SlotWaits
from reconciler.state.model import PendingCreate, State

_SIMPLE_LABEL = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SLOT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
_EDITED = re.compile(r"^g[0-9a-f]{16}$")  # what follows the `+` of a run made after an edit


@dataclass(frozen=True)
class RunChoice:
    run: str | None  # the run this pass converges; None: none yet
    fresh: bool = True  # whether first attempts may be created in it (not in a run left behind)
    cancel_other_runs: bool = True  # running batches of other runs are superseded
    started_by: str = ""  # "schedule" or "replace" when this pass starts the run
    waits: Reason | None = None  # why no run starts now (the job's noop reason)
    alongside: tuple[str, ...] = ()  # earlier runs still running when a new run starts
    missed: str | None = None  # the slot skipped for its starting_deadline (a run id)
    supersedes: frozenset[str] = frozenset()  # other runs whose running batches are cancelled
    edit_waits: bool = False  # the spec changed after the slot's run ended: it waits for the next slot


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


def edited_run(base: str, generation: str) -> str:
    """The run of `base` (a slot or label) that a spec edited after `base` had run makes."""
    return f"{base}+g{generation}"


def shown_run(run: str, timezone: str = "UTC") -> str:
    """A slot's run as the slot's local time; any other run as its id."""
    base, plus, rest = run.partition("+")
    if not _SLOT.match(base):
        return run
    local = datetime.strptime(base, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).astimezone(ZoneInfo(timezone))
    if _EDITED.match(rest):
        return f"{local.isoformat()} (re-run for generation {rest[1:]})"
    return local.isoformat() + (f" (re-run {rest})" if plus else "")


def file_part(run: str) -> str:
    """A run id as one piece of a file name: `2026-12-01T010000Z`."""
    return run.replace(":", "").replace("+", "-")


def newest(runs: Iterable[str]) -> str | None:
    """Slots in time order, after the other runs; of one slot or label, the run itself, then the
    one an edit made, then `--replace`'s in stamp order (of one generation, the order they began)."""
    found = sorted(runs, key=_age)
    return found[-1] if found else None


def _age(run: str) -> tuple[bool, str, int, str]:
    base, _, rest = run.partition("+")
    return (bool(_SLOT.match(base)), base, 0 if not rest else 1 if _EDITED.match(rest) else 2, rest)


def generations_of(live: Sequence[LiveBatch], pending: Iterable[PendingCreate]) -> dict[str, set[str]]:
    """Each run seen, live or intended, with the generations its batches were made from."""
    found: dict[str, set[str]] = {}
    for batch in live:
        found.setdefault(batch.run, set()).add(batch.generation or "")
    for intent in pending:
        found.setdefault(intent.run or DEFAULT_RUN, set()).add(intent.generation)
    return found


def choose_runs(
    desired: Mapping[str, DesiredJob],
    by_job: Mapping[str, Sequence[LiveBatch]],
    state: State,
    ctx: PlanContext,
) -> dict[str, RunChoice]:
    """Each job's run choice, made once per pass: retries are looked for in that run
    (engine/retries.py) and the plan converges it (plans/decide.py).  `by_job`: live batches
    grouped by job."""
    choices = {}
    for name, job in desired.items():
        recorded = state.jobs.get(name)
        choices[name] = choose_run(job, by_job.get(name, ()), recorded.pending if recorded else (), ctx)
    return choices


def choose_run(
    desired: DesiredJob, live: Sequence[LiveBatch], pending: Iterable[PendingCreate], ctx: PlanContext
) -> RunChoice:
    pending = tuple(pending)
    generations = generations_of(live, pending)
    slot = desired.schedule
    due = slot_run(slot.due) if slot and slot.due else None
    if desired.name in ctx.replace:
        return RunChoice(f"{due or desired.run_label}+{ctx.stamp}", started_by="replace")
    if slot is None:
        # An edit of an unscheduled job starts its run anew, under an id of its own.
        same_base, current = _runs_of_base(desired, desired.run_label, generations)
        return RunChoice(
            current or (edited_run(desired.run_label, desired.generation) if same_base else desired.run_label)
        )
    if due is None:
        return _new_slot(slot, due, live, newest(generations))
    same_base, current = _runs_of_base(desired, due, generations)
    if current:
        policy = slot.concurrency_policy
        others = frozenset(same_base - {current})
        return RunChoice(current, cancel_other_runs=policy == "replace", supersedes=others)
    if same_base:
        return _edited_slot(desired, slot, due, same_base, live, pending)
    return _new_slot(slot, due, live, newest(generations))


def _runs_of_base(
    desired: DesiredJob, base: str, generations: dict[str, set[str]]
) -> tuple[set[str], str | None]:
    """The runs of a slot or label, and the newest of them made from the desired generation."""
    same_base = {r for r in generations if run_base(r) == base}
    return same_base, newest(r for r in same_base if _made_from(desired, generations[r]))


def _made_from(desired: DesiredJob, generations: set[str]) -> bool:
    """The legacy generation is worked out only when the current one is not among them."""
    return desired.generation in generations or desired.legacy_generation in generations


def _edited_slot(
    desired: DesiredJob,
    slot: Slot,
    due: str,
    earlier: set[str],
    live: Sequence[LiveBatch],
    pending: Sequence[PendingCreate],
) -> RunChoice:
    """The due slot has run, but from an earlier spec.  While that run still runs the edit
    replaces it, as for any job; once it has ended, the new spec waits for the next slot (as a
    CronJob's template does): an edit never runs a slot a second time."""
    running = {b.run for b in live if not b.terminal} | {p.run or DEFAULT_RUN for p in pending}
    if running & earlier:
        run = edited_run(due, desired.generation)
        return RunChoice(
            run, cancel_other_runs=slot.concurrency_policy == "replace", supersedes=frozenset(earlier)
        )
    last = _last_begun(earlier, live)
    waits = EditWaits(desired.name, last, _slot_id(slot.next), slot.timezone)
    return RunChoice(last, fresh=False, waits=waits, edit_waits=True)


def _last_begun(runs: set[str], live: Sequence[LiveBatch]) -> str:
    """The run whose batches were created last (each generation's run began after the last)."""
    begun = {r: max((b.created_at or 0 for b in live if b.run == r), default=0) for r in runs}
    return max(runs, key=lambda r: (begun[r], _age(r)))


def _new_slot(slot: Slot, due: str | None, live: Sequence[LiveBatch], last: str | None) -> RunChoice:
    upcoming = _slot_id(slot.next)
    if due is None or slot.due is None or slot.now is None:
        return RunChoice(last, fresh=False, waits=NextRun(upcoming, slot.timezone))
    late = (slot.now - slot.due).total_seconds()
    if slot.starting_deadline is not None and late > slot.starting_deadline:
        missed = SlotMissed(due, late, slot.starting_deadline, upcoming, slot.timezone)
        return RunChoice(last, fresh=False, waits=missed, missed=due)
    still = tuple(sorted({b.run for b in live if not b.terminal}))
    if not still:
        return RunChoice(due, cancel_other_runs=False, started_by="schedule")
    policy = slot.concurrency_policy
    if policy == "forbid":
        return RunChoice(last, fresh=False, waits=SlotWaits(due, still, slot.timezone))
    return RunChoice(due, cancel_other_runs=policy == "replace", started_by="schedule", alongside=still)


def _slot_id(instant: datetime | None) -> str | None:
    return slot_run(instant) if instant else None


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
