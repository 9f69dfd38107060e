"""Item 8: what the cost estimate adds to `plan` on the big input (200 MB, cache cold).

The same `plan`, best of several runs each, with the estimate and without it (the token count
replaced by a constant: tests/bench/no_estimate.py); the input cache is removed before every
run, so both read and check all 200 MB.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from reconciler.specs.inputs import digest
from reconciler.specs.inputs.digest import digest_input
from reconciler.specs.inputs.tokens import request_tokens
from tests.bench.context import MIB, Context
from tests.bench.procs import Run, reconciler_argv, run
from tests.bench.table import Row, seconds


def measure(ctx: Context) -> list[Row]:
    repo = ctx.big_input_repo()
    big = repo.data / "big.jsonl"
    shown = f"{big.stat().st_size / MIB:.0f} MiB / {ctx.scale.big_requests:,} requests"
    cache = repo.root / ".reconciler" / "input-cache.json"
    with_estimate = [sys.executable, "-m", "reconciler"]
    without = [sys.executable, "-m", "tests.bench.no_estimate"]
    assert reconciler_argv()[:3] == with_estimate
    timed: dict[str, list[Run]] = {"with": [], "without": []}
    for _ in range(max(ctx.scale.repeats, 3)):  # interleaved: a busy moment hits both alike
        for name, argv in (("with", with_estimate), ("without", without)):
            cache.unlink(missing_ok=True)
            timed[name].append(run([*argv, "plan", *repo.args()]).check())
    best = {name: min(r.seconds for r in runs) for name, runs in timed.items()}
    added = (best["with"] - best["without"]) / best["without"]
    shown_plan = next(r.stdout for r in timed["with"]).splitlines()[0][-70:]
    cpu = _digest_cpu(big, max(ctx.scale.repeats, 3))
    cpu_added = (cpu["with"] - cpu["without"]) / best["without"]
    return [
        Row(
            "8",
            f"plan, input not cached ({shown}): time the cost estimate adds",
            "< 10%",
            f"{added:+.1%} ({seconds(best['with'])} with, {seconds(best['without'])} without)",
            added < 0.10,
            f"best of {len(timed['with'])} each; plan shows …{shown_plan}",
        ),
        Row(
            "8",
            "the same, as CPU: checking the input in-process with and without the count, over plan time",
            "< 10%",
            f"{cpu_added:+.1%} ({seconds(cpu['with'])} vs {seconds(cpu['without'])} of CPU)",
            cpu_added < 0.10,
            "process CPU time, best of each: steadier than wall time on a shared machine",
        ),
    ]


def _digest_cpu(big: Path, repeats: int) -> dict[str, float]:
    """CPU seconds of checking and digesting the input, with the token count and without it."""
    # The count is swapped where digest.py looks it up: the name it imported (not re-exported,
    # hence the attr-defined ignores below).
    counting = request_tokens
    best = {"with": float("inf"), "without": float("inf")}
    try:
        for _ in range(repeats):
            for name, count in (("with", counting), ("without", _no_count)):
                digest.request_tokens = count  # type: ignore[attr-defined]
                started = time.process_time()
                digest_input(big, "/v1/chat/completions", display=str(big))
                best[name] = min(best[name], time.process_time() - started)
    finally:
        digest.request_tokens = counting  # type: ignore[attr-defined]
    return best


def _no_count(endpoint: str, body: dict[str, Any]) -> tuple[int, int]:
    return 0, 0
