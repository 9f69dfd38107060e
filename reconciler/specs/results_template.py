"""Whether two jobs' `results:` can name the same file, compared the way they are written.

A results path is a template filled for each run: `{job}` with the job's name, `{run}` with the
run's id made fit for a file name (`plans/runs.file_part`: letters, digits, `.`, `_` and `-`,
never a path separator).  `../results/{job}/{run}.jsonl` names a folder per job, so two jobs
sharing it never meet; `../results/{run}.jsonl` in two jobs does, on any run id both have.

Paths are compared with `{job}` filled in and each `{run}` standing for any run: two templates
clash when some run of each can fill them to one path.  When both hold a `{run}` in the same
file name only their text before the first and after the last `{run}` is compared, so a clash
may be reported that the runs' own ids would avoid, never the reverse.
"""

from __future__ import annotations

import functools
import os
import re
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

RUN = "{run}"
JOB = "{job}"
_RUN_TEXT = "[A-Za-z0-9._-]+"  # what a run id can become in a file name
_AFTER_ALL = "\U0010ffff"  # sorts after every text that starts with a given prefix


def filled(template: str, job: str) -> str:
    """The template as `job` writes it: `{job}` filled, `{run}` left to each run."""
    return template.replace(JOB, job)


def may_coincide(one: str, other: str) -> bool:
    """Whether some run of each can fill the two (job-filled) paths to the same file."""
    mine, theirs = one.split(os.sep), other.split(os.sep)
    return len(mine) == len(theirs) and all(
        _names_may_coincide(a, b) for a, b in zip(mine, theirs, strict=True)
    )


def fits(template: str, path: str) -> bool:
    """Whether some run fills the (job-filled) template to exactly `path`."""
    return _pattern(template).fullmatch(path) is not None


def clashing(paths: Mapping[str, str]) -> dict[str, list[str]]:
    """job → the other jobs whose (job-filled) results paths can coincide with its own.

    Grouped by folder (a run never holds a separator), then by the text before the first
    `{run}`: 10,000 jobs are compared in about as many steps, not 10,000 squared."""
    found: defaultdict[str, set[str]] = defaultdict(set)
    folders: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)
    loose: list[tuple[str, str]] = []  # a `{run}` in a folder's name: compared with every other
    for job, path in paths.items():
        folder, _, name = path.rpartition(os.sep)
        if RUN in folder:
            loose.append((job, path))
        else:
            folders[folder].append((job, name))
    for names in folders.values():
        for job, other in _same_folder_pairs(names):
            found[job].add(other)
            found[other].add(job)
    everything = list(paths.items())
    for job, path in loose:
        for other, other_path in everything:
            if other != job and may_coincide(path, other_path):
                found[job].add(other)
                found[other].add(job)
    return {job: sorted(others) for job, others in found.items()}


@dataclass(frozen=True)
class Inputs:
    """Every job's input file, to find the one a results path would overwrite."""

    exact: Mapping[str, str]  # path → job
    folders: Mapping[str, list[tuple[str, str]]]  # folder → (file name, job), sorted by name

    @classmethod
    def of(cls, inputs: Mapping[str, str]) -> Inputs:
        folders: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)
        for path, job in inputs.items():
            folder, _, name = path.rpartition(os.sep)
            folders[folder].append((name, job))
        return cls(dict(inputs), {folder: sorted(items) for folder, items in folders.items()})

    def owner_of(self, path: str) -> str | None:
        """The job whose input some run of this (job-filled) results path would overwrite."""
        if RUN not in path:
            return self.exact.get(path)
        folder, _, name = path.rpartition(os.sep)
        if RUN in folder:
            return next((job for target, job in self.exact.items() if fits(path, target)), None)
        candidates = self.folders.get(folder, [])
        prefix = name.split(RUN, 1)[0]
        first = bisect_left(candidates, (prefix, ""))
        last = bisect_right(candidates, (prefix + _AFTER_ALL, ""))
        return next((job for found, job in candidates[first:last] if fits(name, found)), None)


def _same_folder_pairs(names: list[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """Pairs of jobs whose file names (in one folder) can coincide: only names whose text before
    the first `{run}` is a prefix of the other's can, and those sort next to each other."""
    ordered = sorted(names, key=lambda item: item[1].split(RUN, 1)[0])
    prefixes = [name.split(RUN, 1)[0] for _, name in ordered]
    for index, (job, name) in enumerate(ordered):
        end = bisect_right(prefixes, prefixes[index] + _AFTER_ALL, lo=index + 1)
        for other, other_name in ordered[index + 1 : end]:
            if other != job and _names_may_coincide(name, other_name):
                yield job, other


def _names_may_coincide(one: str, other: str) -> bool:
    mine, theirs = one.split(RUN), other.split(RUN)
    if len(mine) == 1 and len(theirs) == 1:
        return one == other
    if len(theirs) == 1:
        return fits(one, other)
    if len(mine) == 1:
        return fits(other, one)
    before = mine[0].startswith(theirs[0]) or theirs[0].startswith(mine[0])
    after = mine[-1].endswith(theirs[-1]) or theirs[-1].endswith(mine[-1])
    return before and after


@functools.lru_cache(maxsize=4096)
def _pattern(template: str) -> re.Pattern[str]:
    return re.compile(_RUN_TEXT.join(re.escape(piece) for piece in template.split(RUN)))
