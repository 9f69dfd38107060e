"""What apply is handed (the writers and how to persist the state) and what it hands back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from reconciler.api.batch import LiveBatch
from reconciler.api.client import ProviderApi
from reconciler.api.uploads import UploadSource
from reconciler.engine.apply.failures import Failure, failed_jobs
from reconciler.engine.apply.leftovers import Leftovers
from reconciler.plans.changes import DesiredJob, Unit
from reconciler.state.model import State

# At most this many requests at once, and never more threads than there are requests to send:
# 64 is the connection pool's size (engine/connect.LIMITS).  Against a provider 50 ms away, 16
# left apply no faster than a 16-thread SDK script; 100 jobs now go out in two rounds.
DEFAULT_PARALLELISM = 64

# What to upload for one unit of a job (engine/sources.py).
SourceFor = Callable[[DesiredJob, Unit], UploadSource]


@dataclass
class Outcome:
    """What happened: every failure (one per part and attempt of a create), and the batches
    the pass created or cancelled."""

    failures: list[Failure] = field(default_factory=list)
    touched: list[LiveBatch] = field(default_factory=list)
    created: int = 0
    cancelled: int = 0
    over_budget: dict[str, str] = field(default_factory=dict)  # job → why its change was not sent

    @property
    def failed_jobs(self) -> set[str]:
        return failed_jobs(self.failures)


@dataclass(frozen=True)
class Effects:
    apis: Mapping[str, ProviderApi]  # apply writes through `.writer`; nothing else holds one
    owner_tag: str
    write: Callable[[State], State]  # persists a state; the caller holds the lock
    now: Callable[[], str]
    source_for: SourceFor
    parallelism: int = DEFAULT_PARALLELISM
    leftovers: Leftovers | None = None  # listed while the pass observed (`Leftovers.listing`)
