"""Paths a spec names (its input, its results), resolved and kept inside the repo."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from reconciler.specs.paths import RepoPaths
from reconciler.specs.settings import SETTINGS_FILE


@dataclass(frozen=True)
class RealRoots:
    """The repo's folders with symlinks resolved: once per scan, not once per spec."""

    repo: Path
    specs: Path
    state: Path

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
    root = (roots or RealRoots.of(paths)).repo
    found = _existing_file_inside(os.path.join(source.parent, relative), root)
    if found is not None:
        return found, ""
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
