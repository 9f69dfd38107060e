"""Item 1: `reconciler validate` of the big input against a bare hash-and-parse pass over it."""

from __future__ import annotations

import sys

from tests.bench.context import MIB, Context
from tests.bench.data import make_repo, write_chat_input
from tests.bench.procs import Run, best_of, reconciler_argv, run
from tests.bench.table import Row, info, mib, ratio, seconds

# The floor: what any validator must at least do, in the plainest Python.
FLOOR = """
import hashlib, json, sys
digest = hashlib.sha256()
with open(sys.argv[1], "rb") as stream:
    for line in stream:
        digest.update(line)
        json.loads(line)
print(digest.hexdigest())
"""


def measure(ctx: Context) -> list[Row]:
    repo = ctx.big_input_repo()
    big = repo.data / "big.jsonl"
    size = big.stat().st_size
    shown = f"{size / MIB:.0f} MiB / {ctx.scale.big_requests:,} requests"
    cache = repo.root / ".reconciler" / "input-cache.json"
    startup = _startup_only(ctx)

    floor = best_of(ctx.scale.repeats, [sys.executable, "-c", FLOOR, str(big)])
    cold_runs = []
    for _ in range(ctx.scale.repeats):
        cache.unlink(missing_ok=True)
        cold_runs.append(run(reconciler_argv("validate", *repo.args())))
    cold = min(cold_runs, key=lambda r: r.seconds)
    warm = best_of(3, reconciler_argv("validate", *repo.args()))

    slowdown = cold.seconds / floor.seconds
    # A cached run does what validating a 1-line input does; the rest would be reading the file.
    left = max(warm.seconds - startup.seconds, 0.0)
    return [
        info("1", f"floor: sha256 + json.loads per line, {shown}", seconds(floor.seconds)),
        Row(
            "1",
            "validate, input not cached, vs the floor",
            "≤ 1.5x",
            f"{ratio(slowdown)} ({seconds(cold.seconds)})",
            slowdown <= 1.5,
            f"incl. {seconds(startup.seconds)} CLI start-up",
        ),
        Row("1", "validate peak RSS", "< 150 MiB", mib(cold.peak_rss_mb), cold.peak_rss_mb < 150),
        Row(
            "1",
            "validate again, input unchanged: time beyond start-up",
            "≤ 0.1 s (near zero)",
            f"{seconds(left)} ({seconds(warm.seconds)} in all)",
            left <= 0.1,
            f"start-up alone (a 1-line input): {seconds(startup.seconds)}",
        ),
    ]


def _startup_only(ctx: Context) -> Run:
    """`validate` of a one-line input: what the CLI costs before any real work."""
    repo = make_repo(ctx.folder("startup"))
    write_chat_input(repo.data / "one.jsonl", 1)
    repo.write_job("one", "one.jsonl")
    run(reconciler_argv("validate", *repo.args()))  # fills the bytecode cache
    return best_of(3, reconciler_argv("validate", *repo.args()))
