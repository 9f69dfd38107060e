"""Paths a spec names (its input, its results), resolved and kept inside the repo."""

from __future__ import annotations

from pathlib import Path

from reconciler.specs.identity import SETTINGS_FILE
from reconciler.specs.paths import RepoPaths


def display(path: Path, paths: RepoPaths) -> str:
    """A path as the user sees it: relative to the repo root when inside it."""
    return path.relative_to(paths.repo).as_posix() if path.is_relative_to(paths.repo) else str(path)


def resolve_input(source: Path, relative: str, paths: RepoPaths) -> tuple[Path | None, str]:
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


def resolve_results(
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
    trouble = _reserved(resolved, root, paths)
    return (None, f"{relative!r} {trouble}") if trouble else (resolved, "")


def _reserved(resolved: Path, root: Path, paths: RepoPaths) -> str:
    """Where results must never land: git's folder, the state's, the settings file."""
    state = paths.state.resolve()
    if resolved.is_relative_to(root / ".git"):
        return "is inside .git/; write results elsewhere"
    if state.parent != root and resolved.is_relative_to(state.parent):
        return f"is inside the state folder {display(state.parent, paths)}; write results elsewhere"
    if resolved.name.startswith(state.name) and resolved.parent == state.parent:
        return "is the state file or its backup; name a new .jsonl file"
    if resolved == root / SETTINGS_FILE:
        return f"is the repo's settings file {SETTINGS_FILE}; name a new .jsonl file"
    return ""
