"""Reads every spec file under `--specs` into checked BatchJob, Provider and Notification documents.

All problems are collected, across files and documents, before anything is raised: a user
fixing a repo should see the whole list at once, each with the line of the offending node.
One spec file's YAML documents are each validated into a model (`read_documents`).

Spec files are parsed once per file identity, so a daemon pass re-reads only what changed
(`ParsedFiles`).  A file's identity is its (device, inode, size, mtime, ctime), as the input
cache keys it: every write moves the ctime, which no one can set back. A file changed in the
last `RECENT_SECONDS` is parsed again each time: two writes within one tick of the
filesystem's clock could leave the same identity behind. Parsed documents are frozen models
and YAML nodes nobody changes, so handing the same ones out again is safe.

One-shot commands keep what YAML gave for each valid file on disk, beside the input cache
(`DiskCache`: `spec-cache.jsonl`, one line per file, keyed by the same identity), and
validate it again into models on the next run: parsing YAML was two thirds of loading a spec.
Only plain data is kept (strings, numbers, booleans, lists, mappings with string keys), and a
file whose documents no longer validate from it is parsed again, so its problems read as
always.  A cache that cannot be read or written is only a slower run.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import stat
import time
from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import yaml
from pydantic import ValidationError

from reconciler.common import fileops
from reconciler.common.errors import Problem, ReadProblem, SpecError, WriteError
from reconciler.common.limits import SANDBOX
from reconciler.specs import results_template
from reconciler.specs.fields import closest, error_message
from reconciler.specs.models import KINDS, BatchJob, Notification, Provider
from reconciler.specs.repo import RealRoots, RepoPaths, display, resolve_input, resolve_results, spec_files
from reconciler.specs.yamlsource import Loc, locate, locate_in, parse_yaml, parse_yaml_text, read_regular_file


@dataclass(frozen=True)
class Document:
    """One valid document of a spec file. Where its fields are written is worked out only when
    a problem found after validation points at one (a name used twice, a provider or an input
    that is not there, results that clash): placing every field of every spec up front was 15%
    of a plan of 10,000 specs, for lines almost never shown. Keeping the YAML nodes instead
    was most of the memory (12 KB a spec); the file's text is kept, and parsed again."""

    source: Path
    display: str
    line: int  # where the document starts
    index: int  # which document of its file: 0 for the first
    text: str | None = field(repr=False)  # the whole file as parsed; None: read it when needed
    model: BatchJob | Provider | Notification

    @property
    def name_line(self) -> int:
        return self.place(("metadata", "name"))[0]

    def place(self, loc: Loc) -> tuple[int, str]:
        """(line, field as written) of `loc`; the document's own line when it cannot be found."""
        text = self.text if self.text is not None else _text_of(self.source)
        found = locate_in(text, self.index, loc) if text else None
        return found or (self.line, ".".join(str(part) for part in loc))

    def problem(self, loc: Loc, message: str) -> Problem:
        return Problem(self.display, *self.place(loc), message)


def _text_of(path: Path) -> str | None:
    """A spec file read again, to place a problem in a document that came from the cache."""
    try:
        return read_regular_file(path).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def read_documents(path: Path, shown: str) -> tuple[list[Document], list[Problem]]:
    """The valid documents of one file (empty ones skipped) and the problems found."""
    documents, problems, _ = _read_file(path, shown)
    return documents, problems


Cached = list[tuple[int, int, object]]  # (index, line, data) of each document YAML gave


def _read_file(path: Path, shown: str) -> tuple[list[Document], list[Problem], Cached]:
    """`read_documents`, and what YAML gave for each document, to keep on disk."""
    documents: list[Document] = []
    cached: Cached = []
    parsed, problems, text = parse_yaml_text(path, shown)
    for index, (node, data) in enumerate(parsed):
        if data is None:
            continue
        line = node.start_mark.line + 1
        cached.append((index, line, data))
        model, trouble = _validate(data, node, shown)
        problems += trouble
        if model is not None:
            documents.append(Document(path, shown, line, index, text, model))
    return documents, problems, cached


def _from_cache(path: Path, shown: str, cached: Cached) -> list[Document] | None:
    """The documents validated from the kept data; None when any of them no longer validates
    (the rules changed since), so that the file is parsed and its problems placed."""
    documents: list[Document] = []
    for index, line, data in cached:
        model = _model_of(data)
        if model is None:
            return None
        documents.append(Document(path, shown, line, index, None, model))
    return documents


def _model_of(data: object) -> BatchJob | Provider | Notification | None:
    kind = data.get("kind") if isinstance(data, dict) else None
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _validate(
    data: object, node: yaml.Node, shown: str
) -> tuple[BatchJob | Provider | Notification | None, list[Problem]]:
    """The document as a model, or the problems keeping it from being one."""
    if not isinstance(data, dict):
        message = "a document must be a mapping with apiVersion, kind, metadata and spec"
        return None, [Problem(shown, locate(node, ())[0], "", message)]
    kind = data.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return None, [Problem(shown, *locate(node, ("kind",)), _kind_problem(kind))]
    try:
        return model.model_validate(data), []
    except ValidationError as error:
        return None, [
            Problem(shown, *locate(node, e["loc"]), error_message(e, model)) for e in error.errors()
        ]


def _kind_problem(kind: object) -> str:
    choices = list(KINDS)
    if kind is None:
        return f"required: one of {', '.join(choices)}"
    hint = closest(str(kind), choices) or f"; use one of {', '.join(choices)}"
    return f"unknown kind {str(kind)[:60]!r}{hint}"


RECENT_SECONDS = 2.0
REPOS_KEPT = 4  # specs folders remembered at once (a daemon has one; tests have many)

Identity = tuple[int, int, int, int, int]
Entry = tuple[Identity, str, list[Document], list[Problem]]

_by_folder: dict[Path, dict[Path, Entry]] = {}


class ParsedFiles:
    """The parsed files of one specs folder during one scan; `close` forgets files not seen,
    and all of them unless `remember`.  `disk`: the files' YAML data kept between one-shot
    commands (`DiskCache`)."""

    def __init__(self, specs: Path, remember: bool = True, disk: DiskCache | None = None) -> None:
        self._specs, self._remember, self._disk = specs, remember, disk
        self._before = _by_folder.pop(specs, {}) if remember else _by_folder.get(specs, {})
        self._now: dict[Path, Entry] = {}

    def read(self, path: Path, shown: str) -> tuple[list[Document], list[Problem]]:
        if not self._remember and not self._before and self._disk is None:
            return read_documents(path, shown)
        try:
            identity = _identity(os.stat(path))
        except OSError:
            return read_documents(path, shown)  # which words the problem
        known = self._before.get(path)
        if known is not None and known[0] == identity and known[1] == shown:
            self._now[path] = known
            return list(known[2]), list(known[3])
        settled = time.time_ns() - identity[4] > RECENT_SECONDS * 1e9
        kept = self._disk.documents(path, shown, identity) if self._disk and settled else None
        if kept is not None:
            return kept, []
        documents, problems, cached = _read_file(path, shown)
        unread = any(isinstance(problem, ReadProblem) for problem in problems)  # try again next time
        if settled and not unread and self._remember:
            self._now[path] = (identity, shown, documents, problems)
        if settled and not problems and self._disk is not None:
            self._disk.keep(path, identity, cached)
        return list(documents), list(problems)

    def close(self, valid: bool = True) -> None:
        """`valid`: the scan found no problem, so the disk cache may be written."""
        if self._disk is not None and valid:
            self._disk.save()
        if not self._remember:
            return
        _by_folder[self._specs] = self._now
        while len(_by_folder) > REPOS_KEPT:
            del _by_folder[next(iter(_by_folder))]


DISK_CACHE_NAME = "spec-cache.jsonl"
DISK_CACHE_FORMAT = 1


class DiskCache:
    """What YAML gave for each valid spec file, by file identity, between one-shot commands.

    The file is a header line, then a line per spec file: its path and identity as JSON, a
    tab, and its documents as JSON.  A line is decoded only when its file is asked for; the
    cache is rewritten (atomically) only when a file was parsed, or one is gone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lines = self._read(path)
        self._kept: dict[str, bytes] = {}  # this scan's lines, by path
        self._changed = False

    @staticmethod
    def _read(path: Path) -> dict[str, tuple[Identity, bytes]]:
        try:
            header, *lines = path.read_bytes().split(b"\n")
            if json.loads(header) != {"format": DISK_CACHE_FORMAT}:
                return {}
            found: dict[str, tuple[Identity, bytes]] = {}
            for line in lines:
                key, _, _ = line.partition(b"\t")
                if key:
                    name, identity = orjson.loads(key)
                    found[name] = (tuple(identity), line)
            return found
        except (OSError, ValueError, TypeError):
            return {}

    def documents(self, path: Path, shown: str, identity: Identity) -> list[Document] | None:
        """The file's documents from its kept data, when it is kept with this very identity."""
        known = self._lines.get(str(path))
        if known is None or known[0] != identity:
            return None
        try:
            # orjson reads what json wrote the same, but four times faster; the one difference,
            # an integer beyond 64 bits read as a float, fails the strict models and so the
            # file is parsed again.
            kept = orjson.loads(known[1].partition(b"\t")[2])
            cached = [(int(i), int(line), data) for i, line, data in kept]
        except (ValueError, TypeError):
            return None
        documents = _from_cache(path, shown, cached)
        if documents is not None:
            self._kept[str(path)] = known[1]
        return documents

    def keep(self, path: Path, identity: Identity, cached: Cached) -> None:
        """A file just parsed; kept only when all of its data is plain (dates, sets and the
        like do not come back the same from JSON)."""
        if not all(_plain(data) for _, _, data in cached):
            return
        key = json.dumps([str(path), list(identity)]).encode()
        try:
            self._kept[str(path)] = key + b"\t" + json.dumps(cached, allow_nan=False).encode()
        except (ValueError, TypeError):
            return
        self._changed = True

    def save(self) -> None:
        if not self._changed and self._kept.keys() == self._lines.keys():
            return  # nothing parsed, nothing gone: the file on disk says the same
        header = json.dumps({"format": DISK_CACHE_FORMAT}).encode()
        with contextlib.suppress(OSError, WriteError):
            fileops.write_bytes(self.path, b"\n".join([header, *self._kept.values()]))


def _plain(value: object) -> bool:
    """Exactly what JSON gives back: a YAML date, set, binary or non-string key is not."""
    if value is None or type(value) in (str, int, bool):
        return True
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is list:
        return all(_plain(item) for item in value)
    if type(value) is dict:
        items = value.items()
        return all(type(key) is str and _plain(item) for key, item in items)
    return False


def _identity(stat: os.stat_result) -> Identity:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@dataclass(frozen=True, slots=True)
class LoadedJob:
    job: BatchJob
    source: Path  # the spec file, absolute
    line: int  # where the document starts
    input_path: Path  # absolute, resolved, inside the repo
    results_path: Path | None = None  # absolute, inside the repo; may not exist yet

    @property
    def name(self) -> str:
        return self.job.metadata.name


@dataclass(frozen=True, slots=True)
class LoadedProvider:
    provider: Provider
    source: Path
    line: int

    @property
    def name(self) -> str:
        return self.provider.metadata.name


@dataclass(frozen=True, slots=True)
class LoadedNotification:
    notification: Notification
    source: Path
    line: int

    @property
    def name(self) -> str:
        return self.notification.metadata.name


@dataclass(frozen=True)
class LoadedRepo:
    jobs: dict[str, LoadedJob]
    providers: dict[str, LoadedProvider]
    notifications: dict[str, LoadedNotification] = field(default_factory=dict)


@dataclass(frozen=True)
class RepoScan:
    """What loading found: the documents that passed, and every problem."""

    repo: LoadedRepo
    problems: list[Problem]


def load_repo(paths: RepoPaths) -> LoadedRepo:
    """Every job and provider under `paths.specs`, or a SpecError listing every problem."""
    scan = scan_repo(paths)
    if scan.problems:
        raise SpecError(scan.problems)
    return scan.repo


def scan_repo(paths: RepoPaths, *, remember: bool = False) -> RepoScan:
    """Like load_repo, but hands back the valid part alongside the problems. `remember`: keep
    the parsed files for the next scan (the daemon); a one-shot command would only hold on to
    their YAML nodes (50 MiB at 10,000 specs) for nothing."""
    with _collector_paused():
        return _scan(paths, remember)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Loading allocates a great many small objects and frees none of them in cycles; the
    cyclic collector would rescan them again and again (40% of loading 10,000 specs)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _scan(paths: RepoPaths, remember: bool) -> RepoScan:
    specs = paths.specs.absolute()
    missing = _missing_folder(specs, display(specs, paths))
    if missing is not None:
        return RepoScan(LoadedRepo({}, {}), [missing])
    documents: list[Document] = []
    files, unlisted = spec_files(specs)
    problems: list[Problem] = [
        ReadProblem(display(folder, paths), None, "", f"cannot read this folder: {error.strerror or error}")
        for folder, error in unlisted
    ]
    disk = None if remember else DiskCache(paths.state.parent / DISK_CACHE_NAME)
    parsed = ParsedFiles(specs, remember, disk)
    valid = False
    try:
        for path in files:
            found, trouble = parsed.read(path, display(path, paths))
            documents += found
            problems += trouble
        scan = _checked(documents, problems, paths)
        valid = not scan.problems
    finally:
        parsed.close(valid)
    return scan


def _checked(documents: list[Document], problems: list[Problem], paths: RepoPaths) -> RepoScan:
    """The checks across documents and files: names, providers, inputs, results."""
    problems += _duplicate_names(documents)
    providers: dict[str, LoadedProvider] = {}
    for document in documents:
        if isinstance(document.model, Provider):
            if document.model.name == SANDBOX:
                problems.append(document.problem(("metadata", "name"), _RESERVED_SANDBOX))
            loaded = LoadedProvider(document.model, document.source, document.line)
            providers.setdefault(loaded.name, loaded)
    checked, trouble = _checked_jobs(documents, providers, paths)
    problems += trouble
    jobs: dict[str, LoadedJob] = {}
    for _, job in checked:
        jobs.setdefault(job.name, job)
    notifications: dict[str, LoadedNotification] = {}
    for document in documents:
        if isinstance(document.model, Notification):
            told = LoadedNotification(document.model, document.source, document.line)
            notifications.setdefault(told.name, told)
    if not problems:  # a job whose document is broken would make its selectors look wrong
        problems += _selectors_naming_no_job(documents)
    clashes = _results_clashes(checked, paths)
    for name in {name for name, _ in clashes}:
        jobs.pop(name, None)
    problems += [problem for _, problem in clashes]
    problems.sort(key=lambda p: (p.path, p.line or 0))  # stable: one document's problems keep their order
    return RepoScan(LoadedRepo(jobs, providers, notifications), problems)


def _results_clashes(
    checked: list[tuple[Document, LoadedJob]], paths: RepoPaths
) -> list[tuple[str, Problem]]:
    """Results that would overwrite another job's input, or that two jobs would both write:
    compared as each job fills the template, a run standing for any run (results_template.py)."""
    inputs = results_template.Inputs.of({str(job.input_path): job.name for _, job in checked})
    targets = {
        job.name: results_template.filled(str(job.results_path), job.name)
        for _, job in checked
        if job.results_path is not None
    }
    writers = results_template.clashing(targets)
    clashes: list[tuple[str, Problem]] = []
    for document, job in checked:
        if job.results_path is None:
            continue
        message = _clash(display(job.results_path, paths), targets[job.name], inputs, writers.get(job.name))
        if message:
            clashes.append((job.name, document.problem(("spec", "results"), message)))
    return clashes


def _clash(shown: str, target: str, inputs: results_template.Inputs, writers: list[str] | None) -> str:
    some = " for some run" if results_template.RUN in target else ""
    if (overwritten := inputs.owner_of(target)) is not None:
        return f"{shown} is the input of job {overwritten!r}{some}; name a new .jsonl file"
    if not writers:
        return ""
    others = ", ".join(repr(n) for n in writers)
    if some:
        return (
            f"{shown} can be the same file as the results of job {others}{some}; "
            "give each job its own file, e.g. ../results/{job}/{run}.jsonl"
        )
    return f"{shown} is also the results of job {others}; give each job its own file"


_RESERVED_SANDBOX = f"'{SANDBOX}' is the name of the built-in sandbox; choose another name"


def _duplicate_names(documents: list[Document]) -> list[Problem]:
    """Names are unique per kind; each copy is reported, pointing at the others."""
    by_name: defaultdict[tuple[str, str], list[Document]] = defaultdict(list)
    for document in documents:
        by_name[(document.model.kind, document.model.name)].append(document)
    problems: list[Problem] = []
    for (kind, name), copies in by_name.items():
        for copy in copies if len(copies) > 1 else []:
            elsewhere = ", ".join(f"{o.display}:{o.name_line}" for o in copies if o is not copy)
            message = f"duplicate {kind} name {name!r}; also at {elsewhere}"
            problems.append(copy.problem(("metadata", "name"), message))
    return problems


def _selectors_naming_no_job(documents: list[Document]) -> list[Problem]:
    """A Notification's job selector without a wildcard is a job's name: one naming no
    BatchJob is a typo (a pattern such as nightly-* may wait for jobs to come)."""
    jobs = {d.model.name for d in documents if isinstance(d.model, BatchJob)}
    problems: list[Problem] = []
    for document in documents:
        if not isinstance(document.model, Notification):
            continue
        for selector in document.model.spec.jobs:
            if selector not in jobs and not any(char in selector for char in "*?["):
                hint = closest(selector, jobs) or "; write a job's name, or a pattern such as nightly-*"
                message = f"{selector!r} names no BatchJob in the specs{hint}"
                problems.append(document.problem(("spec", "jobs"), message))
    return problems


def _check_job(
    document: Document, job: BatchJob, providers: list[str], paths: RepoPaths, roots: RealRoots
) -> tuple[LoadedJob | None, list[Problem]]:
    problems: list[Problem] = []
    reference = job.spec.provider
    if reference == SANDBOX:
        problems.append(document.problem(("spec", "provider"), _NAMED_SANDBOX))
    elif reference is not None and reference not in providers:
        hint = closest(reference, providers) or "; define it, or omit provider for the sandbox"
        message = f"no Provider named {reference!r} in the specs{hint}"
        problems.append(document.problem(("spec", "provider"), message))
    input_path, trouble = resolve_input(document.source, job.spec.input, paths, roots)
    if trouble:
        problems.append(document.problem(("spec", "input"), trouble))
    results_path, trouble = resolve_results(document.source, job.spec.results, paths, input_path, roots)
    if trouble:
        problems.append(document.problem(("spec", "results"), trouble))
    if problems or input_path is None:
        return None, problems
    return LoadedJob(job, document.source, document.line, input_path, results_path), []


_NAMED_SANDBOX = f"omit provider to use the built-in {SANDBOX}; no Provider may be named that"


def read_spec_file(
    path: Path, paths: RepoPaths, providers: Collection[str]
) -> tuple[list[Document], dict[str, LoadedJob], list[Problem]]:
    """One spec file as a whole load reads it, for a daemon that was told only this file changed:
    its documents, its jobs checked (provider, input, results), and the problems.  What only the
    other files can tell (a name used twice, results that clash) is the caller's to check."""
    documents, problems = read_documents(path, display(path, paths)) if path.exists() else ([], [])
    checked, trouble = _checked_jobs(documents, providers, paths)
    jobs: dict[str, LoadedJob] = {}
    for _, job in checked:
        jobs.setdefault(job.name, job)
    return documents, jobs, problems + trouble


def _checked_jobs(
    documents: list[Document], providers: Collection[str], paths: RepoPaths
) -> tuple[list[tuple[Document, LoadedJob]], list[Problem]]:
    """Each BatchJob document checked against the providers, its input and its results: the
    jobs that pass with their documents, in order, and the problems of those that do not."""
    checked: list[tuple[Document, LoadedJob]] = []
    problems: list[Problem] = []
    roots, names = RealRoots.of(paths), sorted(providers)
    for document in documents:
        if isinstance(document.model, BatchJob):
            job, trouble = _check_job(document, document.model, names, paths, roots)
            problems += trouble
            if job is not None:
                checked.append((document, job))
    return checked, problems


def _missing_folder(specs: Path, shown: str) -> Problem | None:
    """Why the specs folder is not there to list, if it is not."""
    try:
        found = os.stat(specs)
    except (FileNotFoundError, NotADirectoryError):
        found = None
    except OSError as error:
        return ReadProblem(shown, None, "", f"cannot read this folder: {error.strerror or error}")
    if found is not None and stat.S_ISDIR(found.st_mode):
        return None
    return Problem(shown, None, "", "specs directory not found; create it or pass --specs DIR")


def job_names(specs: Path) -> set[str]:
    """The names of the BatchJob documents under `specs` as written, nothing else checked: no
    model validated, no input read.  For shell completion, which must answer at once."""
    names: set[str] = set()
    files, _ = spec_files(specs)
    for path in files:
        parsed, _ = parse_yaml(path, path.name)
        for _, data in parsed:
            if not isinstance(data, dict) or data.get("kind") != "BatchJob":
                continue
            metadata = data.get("metadata")
            name = metadata.get("name") if isinstance(metadata, dict) else None
            if isinstance(name, str):
                names.add(name)
    return names
