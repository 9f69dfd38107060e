"""A reconciler repo: where its specs and state are, what its `reconciler.yaml` says, where the
state lives, and the paths a spec names (its input, its results), resolved and kept inside it.

`RepoPaths` holds the three paths every command and the daemon start from.

`reconciler.yaml` at the repo root is one model for the whole file, read once per command.  Its
keys are `owner` (identity.py), `state` and `budget`.  Like a spec, an unknown or mistyped key
is an error with its file, line and a "did you mean", never ignored: `budgte:` must not switch
the repo's budget off without a word.  YAML 1.2 booleans, as every file the tool reads.

The state lives in the local file (the default) or a PostgreSQL database; in order:
`--state-url`, `--state FILE`, `$RECONCILER_STATE_URL`, `state:` in reconciler.yaml, else
`<repo>/.reconciler/state.json`.  A password may come only through the environment
(`$RECONCILER_STATE_URL`, or libpq's own `$PGPASSWORD` / `~/.pgpass`): a flag shows in `ps`
and reconciler.yaml is committed, so a password in either is refused before anything runs.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from reconciler.common.errors import Problem, SpecError, UserError
from reconciler.specs.fields import close_match, error_message, known_keys
from reconciler.specs.yamlsource import locate, parse_yaml

SETTINGS_FILE = "reconciler.yaml"


class _Settings(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


class PlanBudget(_Settings):
    max_usd_per_plan: Annotated[float, Field(gt=0)]
    """What one plan may launch at most, in USD: changes are admitted in plan order while they fit."""


class RepoSettings(_Settings):
    owner: str | None = None
    """The owner id stamped on every batch of this repo (after --owner and $RECONCILER_OWNER)."""
    state: str | None = None
    """A postgresql:// URL (no password) to keep the state in, instead of the state file."""
    budget: PlanBudget | None = None
    """Budgets over a whole plan."""


def read_settings(repo: Path) -> RepoSettings:
    """The settings in `repo`/reconciler.yaml; none set when there is no such file.

    Every problem at once, each as `reconciler.yaml:LINE: field: what to do`."""
    path = repo / SETTINGS_FILE
    if not path.is_file():
        return RepoSettings()
    parsed, problems = parse_yaml(path, SETTINGS_FILE)
    if problems:
        raise SpecError(problems)
    documents = [(node, data) for node, data in parsed if data is not None]
    if not documents:
        return RepoSettings()
    if len(documents) > 1:
        line = documents[1][0].start_mark.line + 1
        raise SpecError([Problem(SETTINGS_FILE, line, "", "one document only; remove the second one")])
    node, data = documents[0]
    if not isinstance(data, dict):
        message = "must be a mapping of settings: owner, state, budget"
        raise SpecError([Problem(SETTINGS_FILE, locate(node, ())[0], "", message)])
    try:
        return RepoSettings.model_validate(data)
    except ValidationError as error:
        raise SpecError(
            [
                Problem(SETTINGS_FILE, *locate(node, e["loc"]), error_message(e, RepoSettings))
                for e in _worth_saying(error.errors())
            ]
        ) from None


def _worth_saying(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Without `required` for a key that a misspelt one beside it is said to mean: the "did you
    mean" line already tells the user what to write."""
    meant = {
        (*e["loc"][:-1], match)
        for e in errors
        if e["type"] == "extra_forbidden"
        and (match := close_match(str(e["loc"][-1]), known_keys(RepoSettings, e["loc"][:-1])))
    }
    return [e for e in errors if not (e["type"] == "missing" and tuple(e["loc"]) in meant)]


def read_budget(repo: Path) -> PlanBudget | None:
    """`budget:` in reconciler.yaml, or None when it sets none."""
    return read_settings(repo).budget


@dataclass(frozen=True)
class RepoPaths:
    repo: Path
    specs: Path
    state: Path  # the state file; with `state_url`, only where local caches and work go
    state_url: str | None = None  # a PostgreSQL state backend (`resolve_state_url`)
    settings: RepoSettings | None = None  # reconciler.yaml as the command read it; None: not read yet

    def repo_settings(self) -> RepoSettings:
        """reconciler.yaml: as read once for this command, or read now."""
        return self.settings if self.settings is not None else read_settings(self.repo)

    @property
    def sandbox_data(self) -> Path:
        """Where the embedded sandbox keeps its files for this repo.  Tied to the repo, not to
        the state file: `--state elsewhere` must see the same sandbox batches, not an empty one."""
        return self.repo / ".reconciler" / "sandbox"


def resolve_paths(repo: str, specs: str | None, state: str | None) -> RepoPaths:
    root = Path(repo).resolve()
    return RepoPaths(
        repo=root,
        specs=Path(specs).resolve() if specs else root / "specs",
        state=Path(state).resolve() if state else root / ".reconciler" / "state.json",
    )


STATE_URL_ENV = "RECONCILER_STATE_URL"
SCHEMES = ("postgresql", "postgres")


def resolve_state_url(
    repo: Path, flag: str | None, state_flag: str | None, settings: RepoSettings | None = None
) -> str | None:
    """The state URL to use, or None for the state file.  `settings`: reconciler.yaml as the
    command already read it (read here when not given)."""
    if flag:
        return checked_url(flag, "--state-url", password_allowed=False)
    if state_flag:
        return None
    from_env = os.environ.get(STATE_URL_ENV)
    if from_env:
        return checked_url(from_env, f"${STATE_URL_ENV}", password_allowed=True)
    from_settings = (settings if settings is not None else read_settings(repo)).state
    if from_settings:
        where = f"{repo / SETTINGS_FILE}: state"
        return checked_url(from_settings, where, password_allowed=False)
    return None


def checked_url(url: str, source: str, *, password_allowed: bool) -> str:
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None or "password" in dict(parse_qsl(parts.query))
    except ValueError:
        raise UserError(f"{source}: not a URL; use postgresql://USER@HOST[:PORT]/DATABASE") from None
    if parts.scheme not in SCHEMES:
        shown = parts.scheme or "no scheme"
        raise UserError(
            f"{source}: {shown} is not a state backend; use postgresql://USER@HOST[:PORT]/DATABASE"
        )
    if has_password and not password_allowed:
        raise UserError(
            f"{source}: holds a password, which would be written down (shell history, ps, git); "
            f"drop it and give it in $PGPASSWORD, ~/.pgpass or ${STATE_URL_ENV} instead"
        )
    return url


@dataclass(frozen=True)
class RealRoots:
    """The repo's folders with symlinks resolved: once per scan, not once per spec; and each
    input path found so far (10,000 specs often share a handful of inputs)."""

    repo: Path
    specs: Path
    state: Path
    inputs: dict[str, Path] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, paths: RepoPaths) -> RealRoots:
        return cls(paths.repo.resolve(), paths.specs.resolve(), paths.state.resolve())


def display(path: Path, paths: RepoPaths) -> str:
    """A path as the user sees it: relative to the repo root when inside it."""
    text, root = str(path), str(paths.repo)
    if os.sep == "/" and root != "/" and text.startswith(root + "/"):  # pathlib's answer, cheaper
        return text[len(root) + 1 :]
    return path.relative_to(paths.repo).as_posix() if path.is_relative_to(paths.repo) else str(path)


def resolve_input(
    source: Path, relative: str, paths: RepoPaths, roots: RealRoots | None = None
) -> tuple[Path | None, str]:
    """The input's real location; '..' and symlinks may move it, but never out of the repo."""
    roots = roots or RealRoots.of(paths)
    joined = os.path.join(source.parent, relative)
    found = roots.inputs.get(joined) or _existing_file_inside(joined, roots.repo)
    if found is not None:
        roots.inputs[joined] = found
        return found, ""
    root = roots.repo
    try:
        resolved = (source.parent / relative).resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, on Python 3.11/3.12
        return None, f"{relative!r} cannot be resolved (a symlink loop?)"
    if not resolved.is_relative_to(root):
        return None, f"{relative!r} leads to {resolved}, outside the repo {root}"
    try:
        mode = resolved.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    if mode is not None and stat.S_ISREG(mode):
        return resolved, ""
    shown = resolved.relative_to(root).as_posix()
    if mode is None:
        return None, f"{shown} does not exist"
    return None, f"{shown} is not a regular file" + (" but a folder" if stat.S_ISDIR(mode) else "")


def _existing_file_inside(joined: str, root: Path) -> Path | None:
    """The common case in strings, without pathlib's cost (a fifth of loading 10,000 specs):
    a regular file inside the repo. Anything else (None) goes the long way, which words it."""
    try:
        real = os.path.realpath(joined, strict=True)
        mode = os.stat(real).st_mode
    except OSError:
        return None
    inside = real.startswith(str(root).rstrip("/") + "/")
    return Path(real) if inside and stat.S_ISREG(mode) and os.sep == "/" else None


def resolve_results(
    source: Path,
    relative: str | None,
    paths: RepoPaths,
    input_path: Path | None,
    roots: RealRoots | None = None,
) -> tuple[Path | None, str]:
    """Where merged results go: inside the repo, not over the input, not a folder."""
    if relative is None:
        return None, ""
    roots = roots or RealRoots.of(paths)
    root = roots.repo
    try:
        resolved = (source.parent / relative).resolve()
    except (OSError, RuntimeError):
        return None, f"{relative!r} cannot be resolved (a symlink loop?)"
    if not resolved.is_relative_to(root):
        return None, f"{relative!r} leads to {resolved}, outside the repo {root}"
    if resolved == input_path or resolved.is_dir():
        return None, f"{relative!r} is the input file or a folder; name a new .jsonl file"
    if resolved.is_relative_to(roots.specs):
        return None, f"{relative!r} is inside the specs folder; write results elsewhere"
    trouble = _reserved(resolved, roots, paths)
    return (None, f"{relative!r} {trouble}") if trouble else (resolved, "")


def _reserved(resolved: Path, roots: RealRoots, paths: RepoPaths) -> str:
    """Where results must never land: git's folder, the state's, the settings file."""
    root, state = roots.repo, roots.state
    if resolved.is_relative_to(root / ".git"):
        return "is inside .git/; write results elsewhere"
    if state.parent != root and resolved.is_relative_to(state.parent):
        return f"is inside the state folder {display(state.parent, paths)}; write results elsewhere"
    if resolved.name.startswith(state.name) and resolved.parent == state.parent:
        return "is the state file or its backup; name a new .jsonl file"
    if resolved == root / SETTINGS_FILE:
        return f"is the repo's settings file {SETTINGS_FILE}; name a new .jsonl file"
    return ""


SPEC_SUFFIXES = (".yaml", ".yml")


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
