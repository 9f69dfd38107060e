"""`reconciler init`: the files a new reconciler repo starts from, each written only if absent."""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click

from reconciler import DISTRIBUTION
from reconciler.cli.commands.schema import render
from reconciler.common.errors import UserError, WriteError
from reconciler.specs.identity import git_remote_owner
from reconciler.specs.repo import SETTINGS_FILE

SCHEMA_FILE = "schema/reconciler-v1.schema.json"  # where the example's `$schema=` line points
WORKFLOW_FILE = ".github/workflows/reconciler.yml"
PLACEHOLDER = "YOUR-ORG/reconciler@COMMIT-SHA"  # in the workflow's RECONCILER_PACKAGE, until set
_PACKAGE_LINE = re.compile(r'^  RECONCILER_PACKAGE: ".*"$', re.MULTILINE)
_NOT_OWNER_CHARS = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True)
class Starter:
    """One file init offers: where it goes (relative to the repo, or to the git work tree) and its text."""

    path: Path
    text: str
    example: bool = False  # the example job and its input: only for a repo without specs


@click.command()
@click.option(
    "--repo",
    metavar="DIR",
    default=".",
    show_default=True,
    type=click.Path(exists=True, file_okay=False),
    help="The folder to set up; it must be inside a git repository.",
)
def command(repo: str) -> int:
    """Start a reconciler repo: settings, an example job and its input, a CI workflow.

    Writes reconciler.yaml (with an owner id), specs/example.yaml (a job for the built-in
    sandbox), data/example.jsonl, the JSON Schema the example's editor line points at, the
    GitHub Actions workflow and .reconciler/.gitignore. A file that exists is kept as it is,
    and the example job is only written into a repo without specs.
    """
    root = Path(repo).resolve()
    top = _git_work_tree(root)
    if top is None:
        raise UserError(f"{root} is not inside a git repository: run `git init` there first")
    package = _package_spec()
    with_example = not _has_specs(root / "specs")
    for starter in _starters(root, top, package):
        click.echo(_offer(starter, with_example, root))
    click.echo("Next: reconciler validate && reconciler plan  (the example runs in the built-in sandbox)")
    if PLACEHOLDER in _read(top / WORKFLOW_FILE):
        click.echo(f"Then: set RECONCILER_PACKAGE in {WORKFLOW_FILE}: where CI installs {DISTRIBUTION} from")
    return 0


def _starters(root: Path, top: Path, package: str | None) -> list[Starter]:
    return [
        Starter(root / SETTINGS_FILE, _settings(root)),
        Starter(root / "specs" / "example.yaml", _template("example.yaml"), example=True),
        Starter(root / "data" / "example.jsonl", _template("example.jsonl"), example=True),
        Starter(root / SCHEMA_FILE, render()),
        Starter(top / WORKFLOW_FILE, _workflow(root, top, package)),
        Starter(root / ".reconciler" / ".gitignore", _template("gitignore")),
    ]


def _offer(starter: Starter, with_example: bool, root: Path) -> str:
    """Writes the starter if it is wanted and absent; says what became of it."""
    shown = os.path.relpath(starter.path, root)
    if starter.example and not with_example and not starter.path.exists():
        return f"skip  {shown} (specs/ holds specs already)"
    if (not starter.example or with_example) and _write_new(starter):
        return f"wrote {shown}"
    return f"kept  {shown} (already there)"


def _write_new(starter: Starter) -> bool:
    """Writes the file unless something is there already (checked and created in one step)."""
    try:
        starter.path.parent.mkdir(parents=True, exist_ok=True)
        with starter.path.open("x", encoding="utf-8") as file:
            file.write(starter.text)
    except FileExistsError:
        return False
    except OSError as error:
        raise WriteError.of(starter.path, error) from None
    return True


def _git_work_tree(folder: Path) -> Path | None:
    """The top of the git work tree holding `folder` (`.git` is a folder, or a file in a worktree)."""
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _has_specs(specs: Path) -> bool:
    return specs.is_dir() and any(p.suffix in (".yaml", ".yml") for p in specs.rglob("*") if p.is_file())


def _template(name: str) -> str:
    return resources.files("reconciler.cli").joinpath("templates", name).read_text(encoding="utf-8")


def _settings(root: Path) -> str:
    """reconciler.yaml, with the owner pinned: the git remote's id, or the folder's name and a
    random suffix (unique between repos sharing an account, and committed, so the same everywhere)."""
    owner = git_remote_owner(root)
    if owner is None:
        name = _NOT_OWNER_CHARS.sub("-", root.name.lower()).strip("-._")[:40] or "repo"
        owner = f"{name}-{secrets.token_hex(3)}"
    return _template("reconciler.yaml").replace("OWNER-ID", owner)


def _workflow(root: Path, top: Path, package: str | None) -> str:
    text = _template("reconciler.yml")
    if package is not None:
        text = _PACKAGE_LINE.sub(f'  RECONCILER_PACKAGE: "{package}"', text, count=1)
    if root != top:  # the reconciler repo is a folder of a larger one: run every step there
        folder = root.relative_to(top).as_posix()
        defaults = f"defaults:\n  run:\n    working-directory: {folder}\n\n"
        text = text.replace("\njobs:\n", f"\n{defaults}jobs:\n", 1)
    return text


def _package_spec() -> str | None:
    """What CI should install: the git commit this reconciler was installed from; None when it
    came from a folder or a file on this machine. (No release is on the package index yet, so
    an install without a git origin leaves the workflow's placeholder for the user to set.)"""
    try:
        origin = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    return package_from_direct_url(json.loads(origin)) if origin else None


def package_from_direct_url(origin: dict[str, object]) -> str | None:
    """A pip requirement for the PEP 610 record of an install: a git URL pinned to its commit."""
    url, vcs = origin.get("url"), origin.get("vcs_info")
    if not isinstance(url, str) or not isinstance(vcs, dict) or vcs.get("vcs") != "git":
        return None
    commit = vcs.get("commit_id")
    if url.startswith("file:") or not isinstance(commit, str):
        return None
    return f"{DISTRIBUTION} @ git+{_without_credentials(url)}@{commit}"


def _without_credentials(url: str) -> str:
    """The URL without a user and password (ssh's bare `git@` stays): they never go into a file."""
    parts = urlsplit(url)
    user, at, host = parts.netloc.rpartition("@")
    if not at or user == "git":
        return url
    return urlunsplit(parts._replace(netloc=host))
