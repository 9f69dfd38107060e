"""Who owns a repo's batches (the owner id), and what to call the repo where people read it
(`repo_name`).

The owner goes into every batch's metadata (common/ownership.py names the keys, and hashes a
job's generation) as a hash, so the repo's remote URL is never sent to the provider.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from reconciler.common.errors import OwnerError
from reconciler.specs.repo import SETTINGS_FILE, RepoSettings, read_settings

OWNER_ENV = "RECONCILER_OWNER"
_OWNER_SYNTAX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")


def owner_tag(owner: str) -> str:
    """What goes into batch metadata: a hash, so the repo's remote URL is not sent to the provider."""
    return hashlib.sha256(owner.encode()).hexdigest()[:16]


def resolve_owner(repo: Path, flag: str | None = None, settings: RepoSettings | None = None) -> str:
    """--owner, then $RECONCILER_OWNER, then `owner:` in reconciler.yaml, then the git remote.

    `settings`: reconciler.yaml as the command already read it (read here when not given).

    Never the state file alone and never an absolute path: a CI runner, a laptop and the
    daemon's host must all arrive at the same owner for the same repo.
    """
    for source, value in (
        ("--owner", flag),
        (f"${OWNER_ENV}", os.environ.get(OWNER_ENV)),
        (f"{SETTINGS_FILE}: owner", _owner_from_settings(repo, settings)),
    ):
        if value:
            if not _OWNER_SYNTAX.match(value):
                raise OwnerError(f"{source}: owner id {value!r} must be 1-200 chars of [A-Za-z0-9._:/@-]")
            return value
    remote = git_remote_owner(repo)
    if remote:
        return remote
    raise OwnerError(
        "no owner id: set `owner: <name>` in reconciler.yaml at the repo root, "
        f"${OWNER_ENV}, or --owner (or add a git remote named origin)"
    )


def _owner_from_settings(repo: Path, settings: RepoSettings | None) -> str | None:
    return (settings if settings is not None else read_settings(repo)).owner


@dataclass(frozen=True)
class RepoName:
    name: str
    source: str  # what gave it, in words: "the owner id", "the git remote origin", "the folder"


def repo_name(repo: Path, owner: str | None) -> RepoName:
    """The repo as the dashboard names it, instead of the owner tag (a hash):

    1. the owner id when it was set (--owner, $RECONCILER_OWNER, `owner:` in reconciler.yaml)
       and is not the git remote's: whoever set it named the repo so, and it is what tells two
       deployments of one repo apart;
    2. the git remote `origin`, without its host: `acme/evals` of `git@github.com:acme/evals.git`;
    3. the folder's name.
    """
    remote = git_remote_owner(repo)
    if owner and owner != remote:
        return RepoName(owner, "the owner id")
    if remote:
        return RepoName(remote.partition("/")[2], "the git remote origin")
    return RepoName(repo.resolve().name, "the folder")


def git_remote_owner(repo: Path) -> str | None:
    """The owner id the git remote `origin` gives, normalised; None without one."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return normalise_remote(done.stdout.strip()) if done.returncode == 0 else None


def normalise_remote(url: str) -> str | None:
    """One id per repository, whatever the transport: `host/path`, lower case.

    Drops the scheme (`ssh`, `git+ssh`, `https`, `git`, …), the user and password, any port
    (a default or an explicit one: the same repository is reached over https on 443 and
    over ssh on 2222), a trailing `.git` and slashes.  `git@github.com:acme/evals.git`,
    `ssh://git@github.com:22/acme/evals` and `https://token@github.com/acme/evals/` all
    become `github.com/acme/evals`.  A remote that is a local path (or `file://`) names a
    place on one machine, not the repo: not an owner.
    """
    url = url.strip()
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", url)
    if scheme:
        if scheme[1].lower() == "file":
            return None
        authority, _, path = scheme[2].partition("/")
        host = _host(authority)
    else:
        scp = re.match(r"^((?:[^@/]+@)?(?:\[[^\]/]+\]|[^:/\[]+)):(.*)$", url)
        if not scp or re.match(r"^[A-Za-z]$", scp[1]):  # a path, or a Windows drive (`C:`)
            return None
        host, path = _host(scp[1], with_port=False), scp[2]
    path = re.sub(r"(?:\.git)?/*$", "", path.strip("/"))
    path = re.sub(r"/+", "/", path)
    if not host or not path:
        return None
    return f"{host}/{path}".lower()


def _host(authority: str, *, with_port: bool = True) -> str:
    """The host of `[user[:password]@]host[:port]`, without its brackets (IPv6) or port."""
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.partition(":")[0] if with_port else host
