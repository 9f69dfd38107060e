"""Admission at scale: what a pass records of the queues costs per change it makes, not per
change times every job of the repo."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, ValuesView

from reconciler.plans.admission import with_admitted
from reconciler.plans.changes import Action, Change, DesiredJob, Plan, Unit
from reconciler.plans.reasons import Adopt, NoBatchYet
from reconciler.state.model import State


class CountedJobs(Mapping[str, DesiredJob]):
    """The desired jobs, counting how often every one of them is walked."""

    def __init__(self, jobs: dict[str, DesiredJob]) -> None:
        self.jobs, self.walks = jobs, 0

    def __getitem__(self, name: str) -> DesiredJob:
        return self.jobs[name]

    def __iter__(self) -> Iterator[str]:
        self.walks += 1
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def values(self) -> ValuesView[DesiredJob]:
        self.walks += 1
        return self.jobs.values()


def test_recording_admitted_creates_walks_the_jobs_once_per_model_not_once_per_change() -> None:
    names = [f"job-{i:04d}" for i in range(2_000)]
    desired = CountedJobs(
        {n: DesiredJob(name=n, generation="g1", provider="sandbox", model="gpt-4o-mini") for n in names}
    )
    adopts = [
        Change(n, Action.ADOPT, Adopt(f"batch_{n}", "g1"), "sandbox", adopt=(f"batch_{n}",)) for n in names
    ]
    create = Change(
        "job-0000", Action.CREATE, NoBatchYet(3, 1), "sandbox", creates=(Unit(0, 1, 3),), model="gpt-4o-mini"
    )

    state = with_admitted(State(lineage="l"), Plan(changes=(*adopts, create)), desired, now=0.0)

    assert desired.walks <= 1  # the adopting reconcile of 100,000 jobs walked them 100,000 times
    (admitted,) = state.queue.admitted.values()
    assert (admitted.model, admitted.requests, admitted.limited) == ("gpt-4o-mini", 3, False)
