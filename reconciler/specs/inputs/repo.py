"""Every job's input digest at once, through the cache; all problems across jobs in one error."""

from __future__ import annotations

from pathlib import Path

from reconciler.common.errors import Problem, SpecError
from reconciler.common.limits import API_LIMITS, NO_LIMITS, InputLimits
from reconciler.specs.inputs.cache import CACHE_NAME, cache_key, read_cache, write_cache
from reconciler.specs.inputs.digest import InputDigest, digest_input
from reconciler.specs.inputs.index import write_index
from reconciler.specs.loader import LoadedRepo
from reconciler.specs.paths import RepoPaths
from reconciler.specs.repo_paths import display


def input_indexes(paths: RepoPaths) -> Path:
    """Where each input's request index is kept (index.py): beside the input cache."""
    return paths.state.parent / "inputs"


def digest_repo(
    repo: LoadedRepo, paths: RepoPaths, *, cache: bool = True, limits: InputLimits = API_LIMITS
) -> dict[str, InputDigest]:
    """Every job's input digest; all problems across jobs in one SpecError.

    The cache lives next to the state file and is written only when every input is valid.
    """
    cache_path = paths.state.parent / CACHE_NAME
    indexes: dict[str, dict[str, bytes]] = {}  # sha256 → fingerprints, of the inputs read now
    cached = read_cache(cache_path) if cache else {}
    fresh: dict[str, InputDigest] = {}
    digests: dict[str, InputDigest] = {}
    problems: list[Problem] = []
    for name, job in sorted(repo.jobs.items()):
        endpoint, shown = job.job.spec.endpoint, display(job.input_path, paths)
        job_limits = NO_LIMITS if job.job.spec.split else limits
        try:
            key = cache_key(job.input_path, endpoint, job_limits)
            digest = fresh.get(key) or cached.get(key)
            if digest is None:
                fingerprints: dict[str, bytes] = {}
                digest = digest_input(
                    job.input_path, endpoint, display=shown, limits=job_limits, fingerprints=fingerprints
                )
                indexes[digest.sha256] = fingerprints
            unchanged = key == cache_key(job.input_path, endpoint, job_limits)
        except OSError as error:
            problems.append(Problem(shown, None, "", f"cannot read: {error.strerror or error}"))
            continue
        except SpecError as error:
            problems += error.problems
            continue
        digests[name] = digest
        if unchanged:  # a file written to while we read it is hashed again next time
            fresh[key] = digest
    if problems:
        raise SpecError(problems)
    if cache and fresh != cached:
        write_cache(cache_path, fresh)
    for sha256, fingerprints in indexes.items() if cache else ():
        write_index(input_indexes(paths), sha256, fingerprints)
    return digests
