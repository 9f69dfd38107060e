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
"""

from __future__ import annotations

import contextlib
import gc
import os
import stat
import time
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from reconciler.common.errors import Problem, ReadProblem, SpecError
from reconciler.common.limits import SANDBOX
from reconciler.specs import results_template
from reconciler.specs.fields import closest, error_message
from reconciler.specs.models import KINDS, BatchJob, Notification, Provider
from reconciler.specs.repo import RealRoots, RepoPaths, display, resolve_input, resolve_results
from reconciler.specs.yamlsource import Loc, locate, parse_yaml

# The fields a problem found after validation points at (a name used twice, a provider or an
# input that is not there, results that clash): their places are kept, the YAML nodes are not
# (they were most of the memory: 12 KB a spec, 120 MB at 10,000 specs).
PLACES: tuple[Loc, ...] = (("metadata", "name"), ("spec", "provider"), ("spec", "input"), ("spec", "results"))


@dataclass(frozen=True)
class Document:
    source: Path
    display: str
    line: int  # where the document starts
    places: Mapping[Loc, tuple[int, str]]  # PLACES → (line, field as written)
    model: BatchJob | Provider | Notification

    @property
    def name_line(self) -> int:
        return self.places[("metadata", "name")][0]

    def problem(self, loc: Loc, message: str) -> Problem:
        line, label = self.places.get(loc, (self.line, ".".join(str(part) for part in loc)))
        return Problem(self.display, line, label, message)


def read_documents(path: Path, shown: str) -> tuple[list[Document], list[Problem]]:
    """The valid documents of one file (empty ones skipped) and the problems found."""
    documents: list[Document] = []
    parsed, problems = parse_yaml(path, shown)
    for node, data in parsed:
        if data is None:
            continue
        model, trouble = _validate(data, node, shown)
        problems += trouble
        if model is not None:
            places = {loc: locate(node, loc) for loc in PLACES}
            documents.append(Document(path, shown, node.start_mark.line + 1, places, model))
    return documents, problems


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
    and all of them unless `remember`."""

    def __init__(self, specs: Path, remember: bool = True) -> None:
        self._specs, self._remember = specs, remember
        self._before = _by_folder.pop(specs, {}) if remember else _by_folder.get(specs, {})
        self._now: dict[Path, Entry] = {}

    def read(self, path: Path, shown: str) -> tuple[list[Document], list[Problem]]:
        if not self._remember and not self._before:
            return read_documents(path, shown)
        try:
            identity = _identity(os.stat(path))
        except OSError:
            return read_documents(path, shown)  # which words the problem
        known = self._before.get(path)
        if known is not None and known[0] == identity and known[1] == shown:
            self._now[path] = known
            return list(known[2]), list(known[3])
        documents, problems = read_documents(path, shown)
        unread = any(isinstance(problem, ReadProblem) for problem in problems)  # try again next time
        if time.time_ns() - identity[4] > RECENT_SECONDS * 1e9 and not unread:
            self._now[path] = (identity, shown, documents, problems)
        return list(documents), list(problems)

    def close(self) -> None:
        if not self._remember:
            return
        _by_folder[self._specs] = self._now
        while len(_by_folder) > REPOS_KEPT:
            del _by_folder[next(iter(_by_folder))]


def _identity(stat: os.stat_result) -> Identity:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedJob:
    job: BatchJob
    source: Path  # the spec file, absolute
    line: int  # where the document starts
    input_path: Path  # absolute, resolved, inside the repo
    results_path: Path | None = None  # absolute, inside the repo; may not exist yet

    @property
    def name(self) -> str:
        return self.job.metadata.name


@dataclass(frozen=True)
class LoadedProvider:
    provider: Provider
    source: Path
    line: int

    @property
    def name(self) -> str:
        return self.provider.metadata.name


@dataclass(frozen=True)
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
    parsed = ParsedFiles(specs, remember)
    try:
        for path in files:
            found, trouble = parsed.read(path, display(path, paths))
            documents += found
            problems += trouble
    finally:
        parsed.close()
    problems += _duplicate_names(documents)
    providers: dict[str, LoadedProvider] = {}
    for document in documents:
        if isinstance(document.model, Provider):
            if document.model.name == SANDBOX:
                problems.append(document.problem(("metadata", "name"), _RESERVED_SANDBOX))
            loaded = LoadedProvider(document.model, document.source, document.line)
            providers.setdefault(loaded.name, loaded)
    jobs: dict[str, LoadedJob] = {}
    notifications: dict[str, LoadedNotification] = {}
    checked: list[tuple[Document, LoadedJob]] = []
    roots, names = RealRoots.of(paths), sorted(providers)
    for document in documents:
        if isinstance(document.model, BatchJob):
            job, trouble = _check_job(document, document.model, names, paths, roots)
            problems += trouble
            if job is not None:
                jobs.setdefault(job.name, job)
                checked.append((document, job))
        elif isinstance(document.model, Notification):
            told = LoadedNotification(document.model, document.source, document.line)
            notifications.setdefault(told.name, told)
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
    jobs: dict[str, LoadedJob] = {}
    roots, names = RealRoots.of(paths), sorted(providers)
    for document in documents:
        if isinstance(document.model, BatchJob):
            job, trouble = _check_job(document, document.model, names, paths, roots)
            problems += trouble
            if job is not None:
                jobs.setdefault(job.name, job)
    return documents, jobs, problems


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


def spec_files(specs: Path) -> tuple[list[Path], list[tuple[Path, OSError]]]:
    """`*.yaml` and `*.yml` under `specs`, recursively (symlinked folders not followed), sorted;
    and the folders that could not be listed, with why: a folder skipped without a word would
    make its jobs look deleted, and their batches be cancelled."""
    found: list[Path] = []
    unlisted: list[tuple[Path, OSError]] = []
    folders = [specs]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(Path(entry.path))
                    elif entry.name.endswith(SPEC_SUFFIXES) and not _links_to_folder(entry):
                        found.append(Path(entry.path))
        except OSError as error:
            unlisted.append((folder, error))
    start = len(str(specs).rstrip("/")) + 1  # every path found starts with `specs` and a "/"
    return sorted(found, key=lambda path: path.as_posix()[start:]), sorted(unlisted, key=lambda u: u[0])


def _links_to_folder(entry: os.DirEntry[str]) -> bool:
    """A symlinked folder is not followed; a link that cannot be followed is read as a file,
    which words the problem."""
    try:
        return entry.is_dir()
    except OSError:
        return False
