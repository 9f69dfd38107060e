"""What apply is handed (each provider's API, how to persist the state) and what it hands back.

The API's writing half (api/writer.py) is built here, from a provider's transport, and only
code under apply/ asks for it: a `ProviderApi` holds no writer (pyproject.toml's contract).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.api.client import ProviderApi
from reconciler.api.uploads import UploadSource
from reconciler.api.writer import BatchWriter
from reconciler.common.limits import DEFAULT_PARALLELISM as DEFAULT_PARALLELISM  # apply names it
from reconciler.engine.apply.failures import Failure, failed_jobs
from reconciler.plans.changes import DesiredJob, LiveBatch, Unit
from reconciler.plans.reasons import OverBudget
from reconciler.state.model import State

if TYPE_CHECKING:  # leftovers.py builds its writers with `writer_of` from here
    from reconciler.engine.apply.leftovers import Leftovers


# What to upload for one unit of a job (engine/sources.py).
SourceFor = Callable[[DesiredJob, Unit], UploadSource]


def writer_of(api: ProviderApi) -> BatchWriter:
    """The writing half of one provider's API, over the transport its reader uses."""
    return BatchWriter(api.transport)


@dataclass
class Outcome:
    """What happened: every failure (one per part and attempt of a create), and the batches
    the pass created or cancelled."""

    failures: list[Failure] = field(default_factory=list)
    touched: list[LiveBatch] = field(default_factory=list)
    created: int = 0
    cancelled: int = 0
    over_budget: dict[str, OverBudget] = field(default_factory=dict)  # job → why its change was not sent

    @property
    def failed_jobs(self) -> set[str]:
        return failed_jobs(self.failures)


@dataclass(frozen=True)
class Effects:
    apis: Mapping[str, ProviderApi]  # apply builds each one's writer (`writer`); nothing else does
    owner_tag: str
    write: Callable[[State], State]  # persists a state; the caller holds the lock
    now: Callable[[], str]
    source_for: SourceFor
    parallelism: int = DEFAULT_PARALLELISM
    leftovers: Leftovers | None = None  # listed while the pass observed (`Leftovers.listing`)

    def writer(self, provider: str) -> BatchWriter:
        return writer_of(self.apis[provider])
