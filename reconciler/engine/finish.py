"""After apply: usage of finished batches, merged results for jobs whose batches all finished,
then opt-in cleanup.

The results file is written before the job's status turns terminal in the state, so whoever
sees `completed` finds the results.  A recorded results file that went missing or changed
is written again from the provider's files (or the copies kept in the work folder); when
those are gone too, that is recorded once, in `results.lost`, and not tried again.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reconciler.api.batch import is_terminal
from reconciler.api.client import ProviderApi
from reconciler.common.errors import ReconcilerError
from reconciler.engine.answers import AnswerStore
from reconciler.engine.apply.cleanup import clean_up
from reconciler.engine.apply.effects import Outcome
from reconciler.engine.apply.failures import Failure
from reconciler.engine.metering import meter_usage
from reconciler.engine.results import (
    ReusedLines,
    collect_results,
    results_file,
    results_problem,
    rewrite_results,
    stored_path,
)
from reconciler.engine.reuse import reused_lines
from reconciler.plans.changes import DesiredJob
from reconciler.plans.jobstatus import updated_history
from reconciler.state.model import JobState, State


def finish_jobs(
    desired: Mapping[str, DesiredJob],
    apis: Mapping[str, ProviderApi],
    state: State,
    outcome: Outcome,
    work_root: Path,
    repo_root: Path,
    answers: AnswerStore | None = None,
) -> State:
    """The state with results and cleanup recorded; unchanged (the same object) when nothing was due.
    `answers`: the answer store, whose lines a run that reuses answers (spec.reuse) writes."""
    jobs = dict(state.jobs)
    for name, job in desired.items():
        recorded = jobs.get(name)
        if recorded is None:
            continue
        try:
            recorded = meter_usage(job, recorded, apis[job.provider].reader, work_root)
        except (ReconcilerError, OSError) as error:
            outcome.failures.append(Failure.of(error, job=name, step="usage", provider=job.provider))
        if recorded.generation != job.generation:
            # A run of an earlier spec (kept until a schedule's next slot) has results that only
            # its own input could join; what it recorded stays as it was.
            jobs[name] = recorded
            continue
        try:
            # A suspended job's cancelled run gets its results too: what it answered, and why
            # the rest has no answer.  Its files stay: the run resumes when it is unsuspended.
            reused = reused_lines(answers, job, recorded.run) if answers and job.reuse else None
            if job.results_path and recorded.status == "collecting":
                reader = apis[job.provider].reader
                recorded = collect_results(job, recorded, reader, work_root, repo_root, reused)
            elif job.results_path and recorded.results and is_terminal(recorded.status):
                recorded = _keep_results(job, recorded, apis[job.provider], work_root, repo_root, reused)
            if (job.cleanup_inputs or job.cleanup_outputs) and not job.suspend:
                recorded = clean_up(apis[job.provider], job, recorded)
        except (ReconcilerError, OSError) as error:
            outcome.failures.append(Failure.of(error, job=name, step="results", provider=job.provider))
        if recorded is not jobs[name]:  # the run's entry in the history says what the job now says
            recorded = recorded.model_copy(
                update={"history": updated_history(recorded, (), job.history_limit)}
            )
        jobs[name] = recorded
    return state if jobs == state.jobs else state.with_jobs(jobs)


def _keep_results(
    job: DesiredJob,
    recorded: JobState,
    api: ProviderApi,
    work_root: Path,
    repo_root: Path,
    reused: ReusedLines | None,
) -> JobState:
    results = recorded.results
    assert results is not None and job.results_path is not None
    if results_problem(job, recorded, repo_root) is None:
        # As recorded: only clear a stale `lost` and move an old absolute path to a relative one.
        tidy = results.model_copy(
            update={"lost": None, "path": stored_path(results_file(job, recorded.run), repo_root)}
        )
        return recorded if tidy == results else recorded.model_copy(update={"results": tidy})
    if results.lost:
        return recorded
    return rewrite_results(job, recorded, api.reader, work_root, repo_root, reused)
