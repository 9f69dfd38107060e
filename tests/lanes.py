"""The test lanes (a pytest plugin, loaded by tests/conftest.py): which tests a run collects and
in what order.

    python -m pytest -m "not slow"   the fast lane, after each change: about 85% of the tests
    python -m pytest -m slow         the slow lane: SIGKILL, soak, replicas, browser, fuzzing...
    python -m pytest                 both (.ci/run runs the fast lane, then the slow one)

A test is `slow` when, on two cores, it takes 2.5 s or more, or 0.5 s of CPU or more
(a daemon or CLI subprocess costs about that much just to start), or is of a slow kind: SIGKILL
crash trials, soaks, replicas and partitions, the browser, memory and streaming bounds, heavy
Hypothesis runs. The fast lane is bound by CPU on two cores: keep it under a minute there.

The benchmark tests (`bench`) are left out unless the `-m` expression names them: a `-m` on the
command line replaces the one in addopts, so `-m 'not bench'` there would not hold.
"""

from __future__ import annotations

import re

import pytest

OPT_IN_MARKERS = ("bench",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leaves out the opt-in markers nobody asked for, then puts the long tests first, so
    parallel workers do not end waiting on one of them: those marked `slow`, then the
    property-based ones (Hypothesis runs dozens of examples each)."""
    asked = str(config.getoption("markexpr", "") or "")
    for marker in OPT_IN_MARKERS:
        if not re.search(rf"\b{marker}\b", asked):
            _deselect(config, items, marker)
    items.sort(key=_rank)


def _deselect(config: pytest.Config, items: list[pytest.Item], marker: str) -> None:
    left_out = [item for item in items if item.get_closest_marker(marker) is not None]
    if left_out:
        items[:] = [item for item in items if item.get_closest_marker(marker) is None]
        config.hook.pytest_deselected(items=left_out)


def _rank(item: pytest.Item) -> int:
    if item.get_closest_marker("slow") is not None:
        return 0
    function = getattr(item, "function", None)
    return 1 if getattr(function, "is_hypothesis_test", False) else 2
