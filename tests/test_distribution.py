"""The name users install reconciler by: pyproject's, and every hint that tells them to install it."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from reconciler import DISTRIBUTION
from tests.fixtures.repo import RunCli

ROOT = Path(__file__).resolve().parent.parent
# `<name>[extra]` wherever a user is told what to install: a name, or a path (`.`, `/src`)
EXTRA = re.compile(r"""(?<![\w./-])([\w./-]+)\[(?:postgresql|test|docs)[],]""")
# `<name> @ git+https://…`: a pip requirement for a commit, as the CI workflow installs it
FROM_GIT = re.compile(r"""(?<![\w./-])([\w.-]+) @ git\+""")


def _texts() -> list[Path]:
    code = sorted((ROOT / "reconciler").rglob("*.py"))
    docs = [
        ROOT / "README.md",
        *sorted((ROOT / "docs").rglob("*.md")),
        *sorted((ROOT / "examples").rglob("*")),
    ]
    return [p for p in [*code, *docs] if p.is_file()]


def test_the_distribution_name_is_pyprojects() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION != "reconciler"  # the bare name is someone else's package
    assert project["scripts"] == {"reconciler": "reconciler.cli.main:main"}


def test_version_names_the_installed_distribution(run_cli: RunCli) -> None:
    result = run_cli("--version")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"reconciler, version {version(DISTRIBUTION)}"


def test_every_install_hint_names_our_distribution_or_a_checkout() -> None:
    named = {
        (path.relative_to(ROOT).as_posix(), name)
        for path in _texts()
        for pattern in (EXTRA, FROM_GIT)
        for name in pattern.findall(path.read_text(encoding="utf-8", errors="replace"))
    }
    assert any(name == DISTRIBUTION for _, name in named), named  # the docs do tell users
    wrong = {
        (where, name) for where, name in named if name != DISTRIBUTION and not name.startswith((".", "/"))
    }
    assert not wrong
