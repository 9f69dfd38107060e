"""Whether a job's recorded results file is on disk as recorded, and where the state says it is.

The state holds the path relative to the repo root, so a state committed from CI names no
runner's directories; states written before that hold an absolute path, still read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from reconciler.api.batch import is_terminal
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.plans.changes import DesiredJob
from reconciler.plans.runs import file_part
from reconciler.state.model import JobState, ResultsRecord, State

CHUNK = 1 << 20


def stored_path(target: Path, repo_root: Path) -> str:
    """How the state records a results path: relative to the repo when inside it."""
    return target.relative_to(repo_root).as_posix() if target.is_relative_to(repo_root) else str(target)


def recorded_location(results: ResultsRecord, repo_root: Path) -> Path:
    path = Path(results.path)
    return path if path.is_absolute() else repo_root / path


def results_file(job: DesiredJob, run: str | None) -> Path:
    """`results:` with {job} and {run} filled in (a run id made fit for a file name)."""
    assert job.results_path is not None
    filled = job.results_path.replace("{job}", job.name).replace("{run}", file_part(run or DEFAULT_RUN))
    return Path(filled)


def results_problem(job: DesiredJob, recorded: JobState, repo_root: Path) -> str | None:
    """None when the recorded results are where the spec wants them, with the recorded sha256."""
    results = recorded.results
    if not job.results_path or results is None:
        return None
    target = results_file(job, recorded.run)
    if recorded_location(results, repo_root) != target:
        return "is not written yet at the path the spec now names"
    if not target.is_file():
        return "is missing"
    if file_sha256(target) != results.sha256:
        return "has changed since it was written (sha256 differs)"
    return None


def results_notes(desired: Mapping[str, DesiredJob], state: State, repo_root: Path) -> tuple[str, ...]:
    """What a plan says about results files: to be written again, or lost for good."""
    notes = []
    for name, job in sorted(desired.items()):
        recorded = state.jobs.get(name)
        if recorded is None or recorded.results is None or not is_terminal(recorded.status):
            continue
        if recorded.generation != job.generation:  # a new run writes them anew
            continue
        problem = results_problem(job, recorded, repo_root)
        if problem is None or job.results_path is None:
            continue
        shown = stored_path(results_file(job, recorded.run), repo_root)
        if recorded.results.lost:
            notes.append(f"{name}: {shown} {problem}, and cannot be written again: {recorded.results.lost}")
        else:
            notes.append(f"{name}: {shown} {problem}; reconcile writes it again from the provider's files")
    return tuple(notes)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
