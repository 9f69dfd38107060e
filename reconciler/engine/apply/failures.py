"""What went wrong in a pass, as data: which job, which step of it, which part and attempt, and
what the server answered (its HTTP status and any wait it asked for).

A failure is words only where it is shown: `describe` is the one place they are made, for
the CLI's `error:` lines, the daemon's log and its dashboard.  Everything else (metrics,
when the daemon looks again, which jobs failed) reads the fields.  The create protocol
(create.py) keeps one per part and attempt, so a job split in parts reports every part.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from reconciler.common.errors import ApiError, ApiStatusError, OutcomeUnknownError

# upload → create: a unit's two requests; cancel: one batch; usage, results: after apply;
# sweep: a provider's leftover uploads (no job); run: a job waited for ended without completing.
Step = Literal["upload", "create", "cancel", "usage", "results", "sweep", "run"]


class Failure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job: str | None  # None: not one job's (the sweep of a provider's uploads)
    step: Step
    message: str  # the error's own text, secrets already scrubbed
    part: int | None = None
    attempt: int | None = None  # the part's attempt number (1 = its first batch)
    batch_id: str | None = None
    provider: str | None = None
    status: int | None = None  # the server's HTTP status; None: no answer, or nothing was sent
    api: bool = True  # False: a local problem (an input file, the disk), not the provider's
    retry_after: float | None = None  # seconds the server asked to wait before the next try

    @classmethod
    def of(
        cls,
        error: Exception,
        *,
        job: str | None,
        step: Step,
        part: int | None = None,
        attempt: int | None = None,
        batch_id: str | None = None,
        provider: str | None = None,
    ) -> Failure:
        status = error.status if isinstance(error, ApiStatusError | OutcomeUnknownError) else None
        wait = error.retry_after if isinstance(error, ApiStatusError) else None
        return cls(
            job=job,
            step=step,
            message=str(error),
            part=part,
            attempt=attempt,
            batch_id=batch_id,
            provider=provider,
            status=status,
            api=isinstance(error, ApiError),
            retry_after=wait,
        )

    @property
    def status_label(self) -> str:
        """The `status` label of the api_errors metric: the HTTP status, else `connection`
        (no answer) or `other` (not the API's)."""
        if self.status is not None:
            return str(self.status)
        return "connection" if self.api else "other"


def describe(failure: Failure) -> str:
    """`nightly-eval: create part 1 attempt 2: provider x: POST /v1/batches: HTTP 500: …`"""
    subject = failure.job if failure.job is not None else f"uploads on {failure.provider}"
    return f"{subject}: {reason(failure)}"


def reason(failure: Failure) -> str:
    """What failed and why, without the job: `create part 1 attempt 2: …`."""
    where = {
        "upload": f"upload part {failure.part} attempt {failure.attempt}: ",
        "create": f"create part {failure.part} attempt {failure.attempt}: ",
        "cancel": f"cancel {failure.batch_id}: ",
        "usage": "usage: ",
        "results": "results: ",
        "sweep": "leftover uploads not cleaned up: ",
        "run": "",
    }[failure.step]
    return where + failure.message


def failed_jobs(failures: list[Failure]) -> set[str]:
    return {f.job for f in failures if f.job is not None}


def server_wait(failures: list[Failure]) -> float | None:
    """The shortest wait a server asked for in these failures; None when none asked."""
    waits = [f.retry_after for f in failures if f.retry_after is not None and f.retry_after > 0]
    return min(waits) if waits else None
