"""The package's layout (ARCHITECTURE.md, "Where to add"): one cohesive topic per module, so no
line cap, only a sanity bound that says a module has grown two topics; and a file name says
which module it is, so no two share one (a command's module under `cli/commands/` included)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "reconciler"
MOST_LINES = 600
# The package's size budget, counted as `find reconciler -name '*.py' | wc -l` counts it: 125 after
# the house was put in order, then two topics of their own arrived (queue admission,
# plans/admission.py; the answer store, engine/answers.py, split from engine/reuse.py to keep both
# under the line bound).  A new module needs a topic of its own; raise this only with one.
MOST_MODULES = 127


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def test_no_module_is_long_enough_to_hold_two_topics() -> None:
    lines = {
        p.relative_to(PACKAGE).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in _modules()
    }
    assert len(lines) > 50
    assert {name: n for name, n in lines.items() if n > MOST_LINES} == {}


def test_no_two_modules_share_a_file_name() -> None:
    folders: dict[str, list[str]] = defaultdict(list)
    for module in _modules():
        folders[module.name].append(module.parent.relative_to(PACKAGE).as_posix())
    assert len(folders) > 50
    assert {name: where for name, where in folders.items() if len(where) > 1} == {}


def test_the_package_keeps_to_its_module_budget() -> None:
    count = len(list(PACKAGE.rglob("*.py")))
    assert 50 < count <= MOST_MODULES
