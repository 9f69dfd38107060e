"""The test lanes (tests/lanes.py): `-m "not slow"` and `-m slow` split the suite between them,
and the benchmark tests stay out of both (and of a bare run) unless `-m` names them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAST_LANE_SHARE = 0.7  # of all the tests, at least; issue 27

SAMPLE = """
import pytest

def test_plain(): pass

@pytest.mark.slow
def test_long(): pass

@pytest.mark.bench
def test_benchmark(): pass

@pytest.mark.bench
@pytest.mark.slow
def test_long_benchmark(): pass
"""


@pytest.mark.parametrize(
    ("markexpr", "expected"),
    [
        (None, {"test_plain", "test_long"}),
        ("not slow", {"test_plain"}),
        ("slow", {"test_long"}),
        ("bench", {"test_benchmark", "test_long_benchmark"}),
        ("not bench", {"test_plain", "test_long"}),
        ("slow or bench", {"test_long", "test_benchmark", "test_long_benchmark"}),
        ("slow and not bench", {"test_long"}),
    ],
)
def test_bench_is_left_out_unless_the_marker_expression_names_it(
    pytester: pytest.Pytester, markexpr: str | None, expected: set[str]
) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    slow: long\n    bench: benchmark\n")
    pytester.makepyfile(test_sample=SAMPLE)
    selection = [] if markexpr is None else ["-m", markexpr]
    result = pytester.runpytest_inprocess("--collect-only", "-q", "-p", "tests.lanes", *selection)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert _node_ids(result.outlines) == {f"test_sample.py::{name}" for name in expected}


@pytest.mark.slow
def test_the_two_lanes_split_the_suite_and_the_fast_one_holds_most_of_it() -> None:
    everything, slow, fast = _collect(), _collect("-m", "slow"), _collect("-m", "not slow")
    assert slow and fast
    assert slow.isdisjoint(fast)
    assert slow | fast == everything
    assert len(fast) >= FAST_LANE_SHARE * len(everything), (len(fast), len(everything))


def _collect(*args: str) -> set[str]:
    """The node ids a run of the real suite with `args` would run: pytest in a subprocess, as a
    developer or CI starts it, with the addopts in pyproject.toml (in one process, and without
    rewriting asserts: only the collection is wanted)."""
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n0", "--assert=plain"]
    done = subprocess.run(
        [*command, "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return _node_ids(done.stdout.splitlines())


def _node_ids(lines: list[str]) -> set[str]:
    """The node ids `--collect-only -q` prints, one a line, before its first blank line."""
    listed = lines[: lines.index("")] if "" in lines else lines
    return {line for line in listed if "::" in line}
