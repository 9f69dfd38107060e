"""Every job's input digest at once, and what is kept of inputs beside the state to make that
cheap and a plan precise.  All problems across jobs come in one error.

Digests are cached by file identity next to the state, so an unchanged input is not re-read.
A cache that cannot be read or written is only a slower next run, never an error.

Each input's requests by custom_id are fingerprinted, so a plan can say which requests
changed.  The index is written beside the input cache (`<state dir>/inputs/<sha256>.idx`)
whenever an input is read in full, one line per request: the custom_id as JSON, a space, a
64-bit fingerprint of the line.  An input no longer on disk is compared through its index;
only the latest few are kept.  Beside it, for jobs with spec.reuse, each request's identity
(`<sha256>.ids`), so an unchanged input is not hashed again to choose what a run reuses.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from pathlib import Path

from reconciler.common import fileops
from reconciler.common.errors import Problem, SpecError, WriteError
from reconciler.common.limits import API_LIMITS, NO_LIMITS, InputLimits
from reconciler.specs.inputs.digest import InputDigest, digest_input
from reconciler.specs.loader import LoadedRepo
from reconciler.specs.repo import RepoPaths, display

CACHE_NAME = "input-cache.json"
# 2: digests carry token estimates; 3: keys carry the inode and ctime too; 4: the largest request
CACHE_FORMAT = 4


def cache_key(path: Path, endpoint: str, limits: InputLimits) -> str:
    """The file's identity: an edit that keeps size and mtime (a restored timestamp) still
    moves the inode change time, which no user can set back."""
    stat = path.stat()
    identity = [stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
    # The inputs limit is in the key too: a digest cached before embedding inputs were counted
    # never stands in for one that counts them.
    shape = [limits.max_requests, limits.max_bytes, limits.max_inputs]
    return json.dumps([str(path), *identity, endpoint, *shape])


def drop_cache(folder: Path) -> None:
    """`--refresh-inputs`: forget every cached digest, so each input is read again."""
    with contextlib.suppress(FileNotFoundError):
        (folder / CACHE_NAME).unlink()


def read_cache(path: Path) -> dict[str, InputDigest]:
    """The cached digests; a missing or damaged cache is an empty one, rewritten later."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format_version") != CACHE_FORMAT:
            return {}
        return {key: InputDigest(**entry) for key, entry in document["inputs"].items()}
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return {}


def write_cache(path: Path, digests: dict[str, InputDigest]) -> None:
    """Atomically (temp file + rename); a cache that cannot be written is only a slower next run."""
    document = {"format_version": CACHE_FORMAT, "inputs": {k: asdict(d) for k, d in digests.items()}}
    with contextlib.suppress(OSError, WriteError):
        fileops.write_bytes(path, json.dumps(document, indent=1, sort_keys=True).encode())


SUFFIX = ".idx"
KEPT = 50  # indexes kept per repo, newest first
MAX_SHOWN_IDS = 3


def write_indexes(folder: Path, indexes: dict[str, dict[str, bytes]]) -> None:
    """Best effort: an index that cannot be written only makes a later diff say less.  The
    folder is pruned once, after all of them (per index, 100 new inputs cost 100 listings)."""
    for sha256, fingerprints in indexes.items():
        text = "".join(f"{json.dumps(key)} {print_.hex()}\n" for key, print_ in fingerprints.items())
        with contextlib.suppress(OSError, WriteError):
            fileops.write_bytes(folder / f"{sha256}{SUFFIX}", text.encode())
    if indexes:
        with contextlib.suppress(OSError):
            _prune(folder)


def read_index(folder: Path, sha256: str) -> dict[str, str] | None:
    try:
        lines = (folder / f"{sha256}{SUFFIX}").read_text(encoding="utf-8").splitlines()
        return {json.loads(key): value for key, _, value in (line.rpartition(" ") for line in lines)}
    except (OSError, ValueError):
        return None


def compare(old: dict[str, str], new: dict[str, str]) -> dict[str, object]:
    """Requests added, removed and changed by custom_id, with a few ids of each."""
    added = [k for k in new if k not in old]
    removed = [k for k in old if k not in new]
    changed = [k for k in new if k in old and old[k] != new[k]]
    summary: dict[str, object] = {"added": len(added), "removed": len(removed), "changed": len(changed)}
    summary["examples"] = {
        kind: ids[:MAX_SHOWN_IDS]
        for kind, ids in (("added", added), ("removed", removed), ("changed", changed))
        if ids
    }
    return summary


IDENTITIES = ".ids"


def write_identities(folder: Path, sha256: str, endpoint: str, identities: list[tuple[str, str]]) -> None:
    """Best effort, like an index: each request's identity (spec.reuse), in input order, after a
    first line naming the endpoint they were taken for.  An identity cannot be cheaper to compute
    (the body's canonical JSON, hashed), so an input is hashed once per content, not per plan."""
    text = json.dumps(endpoint) + "\n" + "".join(f"{json.dumps(c)} {i}\n" for c, i in identities)
    with contextlib.suppress(OSError, WriteError):
        fileops.write_bytes(folder / f"{sha256}{IDENTITIES}", text.encode())
        _prune(folder, IDENTITIES)


def read_identities(folder: Path, sha256: str, endpoint: str) -> list[tuple[str, str]] | None:
    """(custom_id, identity) of each request, as `write_identities` kept them; None when not kept
    (or kept for another endpoint, or damaged)."""
    try:
        head, *lines = (folder / f"{sha256}{IDENTITIES}").read_text(encoding="utf-8").splitlines()
        if json.loads(head) != endpoint:
            return None
        return [(str(json.loads(key)), value) for key, _, value in (line.rpartition(" ") for line in lines)]
    except (OSError, ValueError):
        return None


def _prune(folder: Path, suffix: str = SUFFIX) -> None:
    indexes = sorted(folder.glob(f"*{suffix}"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for stale in indexes[KEPT:]:
        with contextlib.suppress(OSError):
            stale.unlink()


def input_indexes(paths: RepoPaths) -> Path:
    """Where each input's request index is kept: beside the input cache."""
    return paths.state.parent / "inputs"


def too_large_to_queue(repo: LoadedRepo, name: str, digest: InputDigest, shown: str) -> list[Problem]:
    """A request larger than its model's declared queue limit could never be enqueued, split
    or not: the line that says so (checked per job: jobs sharing an input may use other Providers)."""
    found = repo.providers.get(repo.jobs[name].job.spec.provider or "")
    limit = found.provider.spec.limit_for(digest.model) if found else None
    if limit is None or limit.enqueued_tokens is None or digest.largest_tokens <= limit.enqueued_tokens:
        return []
    message = (
        f"this request alone is ~{digest.largest_tokens:,} prompt tokens, more than the "
        f"{limit.enqueued_tokens:,} enqueued tokens Provider {found.name if found else ''} allows "
        f"{digest.model}: it could never be enqueued; shorten it, or raise the limit if yours is higher"
    )
    return [Problem(shown, digest.largest_line, "body", message)]


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
    done: dict[tuple[Path, str, InputLimits], InputDigest] = {}  # inputs that jobs share: once
    for name, job in sorted(repo.jobs.items()):
        endpoint, shown = job.job.spec.endpoint, display(job.input_path, paths)
        job_limits = NO_LIMITS if job.job.spec.split else limits
        shared = done.get((job.input_path, endpoint, job_limits))
        if shared is not None:
            digests[name] = shared
            problems += too_large_to_queue(repo, name, shared, shown)
            continue
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
        problems += too_large_to_queue(repo, name, digest, shown)
        digests[name] = done[(job.input_path, endpoint, job_limits)] = digest
        if unchanged:  # a file written to while we read it is hashed again next time
            fresh[key] = digest
    if problems:
        raise SpecError(problems)
    if cache and fresh != cached:
        write_cache(cache_path, fresh)
    if cache:
        write_indexes(input_indexes(paths), indexes)
    return digests
