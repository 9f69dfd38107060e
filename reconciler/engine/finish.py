"""After apply: merged results for jobs whose batches all finished, then opt-in cleanup.

The results file is written before the job's status turns terminal in the state, so whoever
sees `completed` finds the results.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reconciler.api.client import ProviderApi
from reconciler.common.errors import ReconcilerError
from reconciler.engine.apply.cleanup import clean_up
from reconciler.engine.apply.effects import Outcome
from reconciler.engine.results import collect_results
from reconciler.plans.changes import DesiredJob
from reconciler.plans.history import updated_history
from reconciler.state.model import State


def finish_jobs(
    desired: Mapping[str, DesiredJob],
    apis: Mapping[str, ProviderApi],
    state: State,
    outcome: Outcome,
    work_root: Path,
) -> State:
    """The state with results and cleanup recorded; unchanged (the same object) when nothing was due."""
    jobs = dict(state.jobs)
    for name, job in desired.items():
        recorded = jobs.get(name)
        if recorded is None or job.suspend:
            continue
        try:
            if job.results_path and recorded.status == "collecting":
                recorded = collect_results(job, recorded, apis[job.provider].reader, work_root)
            if job.cleanup_inputs or job.cleanup_outputs:
                recorded = clean_up(apis[job.provider].writer, job, recorded)
        except (ReconcilerError, OSError) as error:
            outcome.failures[name] = f"results: {error}"
        if recorded is not jobs[name]:  # the run's entry in the history says what the job now says
            recorded = recorded.model_copy(
                update={"history": updated_history(recorded, (), job.history_limit)}
            )
        jobs[name] = recorded
    return state if jobs == state.jobs else state.with_jobs(jobs)
