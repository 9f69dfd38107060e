"""Reads every spec file under `--specs` into checked BatchJob and Provider documents.

All problems are collected, across files and documents, before anything is raised: a user
fixing a repo should see the whole list at once, each with the line of the offending node.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from reconciler.common.errors import Problem, SpecError
from reconciler.common.limits import SANDBOX
from reconciler.specs.messages import closest, error_message
from reconciler.specs.models import KINDS, BatchJob, Provider
from reconciler.specs.paths import RepoPaths
from reconciler.specs.yamlsource import Loc, locate, parse_yaml

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
class LoadedRepo:
    jobs: dict[str, LoadedJob]
    providers: dict[str, LoadedProvider]


@dataclass(frozen=True)
class RepoScan:
    """What loading found: the documents that passed, and every problem."""

    repo: LoadedRepo
    problems: list[Problem]


@dataclass(frozen=True)
class _Document:
    source: Path
    display: str
    node: yaml.Node
    model: BatchJob | Provider

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    @property
    def name_line(self) -> int:
        return locate(self.node, ("metadata", "name"))[0]

    def problem(self, loc: Loc, message: str) -> Problem:
        return Problem(self.display, *locate(self.node, loc), message)


def load_repo(paths: RepoPaths) -> LoadedRepo:
    """Every job and provider under `paths.specs`, or a SpecError listing every problem."""
    scan = scan_repo(paths)
    if scan.problems:
        raise SpecError(scan.problems)
    return scan.repo


def scan_repo(paths: RepoPaths) -> RepoScan:
    """Like load_repo, but hands back the valid part alongside the problems."""
    with _collector_paused():
        return _scan(paths)


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


def _scan(paths: RepoPaths) -> RepoScan:
    specs = paths.specs.absolute()
    if not specs.is_dir():
        message = "specs directory not found; create it or pass --specs DIR"
        return RepoScan(LoadedRepo({}, {}), [Problem(display(specs, paths), None, "", message)])
    documents: list[_Document] = []
    problems: list[Problem] = []
    for path in spec_files(specs):
        found, trouble = read_documents(path, display(path, paths))
        documents += found
        problems += trouble
    problems += _duplicate_names(documents)
    providers: dict[str, LoadedProvider] = {}
    for document in documents:
        if isinstance(document.model, Provider):
            if document.model.name == SANDBOX:
                problems.append(document.problem(("metadata", "name"), _RESERVED_SANDBOX))
            loaded = LoadedProvider(document.model, document.source, document.line)
            providers.setdefault(loaded.name, loaded)
    jobs: dict[str, LoadedJob] = {}
    for document in documents:
        if isinstance(document.model, BatchJob):
            job, trouble = _check_job(document, document.model, sorted(providers), paths)
            problems += trouble
            if job is not None:
                jobs.setdefault(job.name, job)
    return RepoScan(LoadedRepo(jobs, providers), problems)


_RESERVED_SANDBOX = f"'{SANDBOX}' is the name of the built-in sandbox; choose another name"


def _duplicate_names(documents: list[_Document]) -> list[Problem]:
    """Names are unique per kind; each copy is reported, pointing at the others."""
    by_name: defaultdict[tuple[str, str], list[_Document]] = defaultdict(list)
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
    document: _Document, job: BatchJob, providers: list[str], paths: RepoPaths
) -> tuple[LoadedJob | None, list[Problem]]:
    problems: list[Problem] = []
    reference = job.spec.provider
    if reference == SANDBOX:
        problems.append(document.problem(("spec", "provider"), _NAMED_SANDBOX))
    elif reference is not None and reference not in providers:
        hint = closest(reference, providers) or "; define it, or omit provider for the sandbox"
        message = f"no Provider named {reference!r} in the specs{hint}"
        problems.append(document.problem(("spec", "provider"), message))
    input_path, trouble = _resolve_input(document.source, job.spec.input, paths)
    if trouble:
        problems.append(document.problem(("spec", "input"), trouble))
    results_path, trouble = _resolve_results(document.source, job.spec.results, paths, input_path)
    if trouble:
        problems.append(document.problem(("spec", "results"), trouble))
    if problems or input_path is None:
        return None, problems
    return LoadedJob(job, document.source, document.line, input_path, results_path), []


_NAMED_SANDBOX = f"omit provider to use the built-in {SANDBOX}; no Provider may be named that"


def _resolve_input(source: Path, relative: str, paths: RepoPaths) -> tuple[Path | None, str]:
    """The input's real location; '..' and symlinks may move it, but never out of the repo."""
    root = paths.repo.resolve()
    try:
        resolved = (source.parent / relative).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, on Python 3.11/3.12
        return None, f"{relative!r} cannot be resolved (a symlink loop?)"
    if not resolved.is_relative_to(root):
        return None, f"{relative!r} leads to {resolved}, outside the repo {root}"
    shown = resolved.relative_to(root).as_posix()
    if not resolved.exists():
        return None, f"{shown} does not exist"
    if not resolved.is_file():
        return None, f"{shown} is not a regular file" + (" but a folder" if resolved.is_dir() else "")
    return resolved, ""


def _resolve_results(
    source: Path, relative: str | None, paths: RepoPaths, input_path: Path | None
) -> tuple[Path | None, str]:
    """Where merged results go: inside the repo, not over the input, not a folder."""
    if relative is None:
        return None, ""
    root = paths.repo.resolve()
    try:
        resolved = (source.parent / relative).resolve()
    except (OSError, RuntimeError):
        return None, f"{relative!r} cannot be resolved (a symlink loop?)"
    if not resolved.is_relative_to(root):
        return None, f"{relative!r} leads to {resolved}, outside the repo {root}"
    if resolved == input_path or resolved.is_dir():
        return None, f"{relative!r} is the input file or a folder; name a new .jsonl file"
    if resolved.is_relative_to(paths.specs.resolve()):
        return None, f"{relative!r} is inside the specs folder; write results elsewhere"
    return resolved, ""


def spec_files(specs: Path) -> list[Path]:
    """`*.yaml` and `*.yml` under `specs`, recursively (symlinked folders not followed), sorted."""
    found = [
        Path(folder, name)
        for folder, _, names in os.walk(specs)
        for name in names
        if name.endswith(SPEC_SUFFIXES)
    ]
    return sorted(found, key=lambda path: path.relative_to(specs).as_posix())


def display(path: Path, paths: RepoPaths) -> str:
    """A path as the user sees it: relative to the repo root when inside it."""
    return path.relative_to(paths.repo).as_posix() if path.is_relative_to(paths.repo) else str(path)


def read_documents(path: Path, shown: str) -> tuple[list[_Document], list[Problem]]:
    """The valid documents of one file (empty ones skipped) and the problems found."""
    documents: list[_Document] = []
    parsed, problems = parse_yaml(path, shown)
    for node, data in parsed:
        if data is None:
            continue
        model, trouble = _validate(data, node, shown)
        problems += trouble
        if model is not None:
            documents.append(_Document(path, shown, node, model))
    return documents, problems


def _validate(data: object, node: yaml.Node, shown: str) -> tuple[BatchJob | Provider | None, list[Problem]]:
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
