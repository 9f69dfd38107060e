"""Item 9 (issue 19): how soon the CLI answers. `reconciler --help` over a bare `python -c pass`,
and `validate` of this repository's quickstart (copied to the work folder, input cached as a
user's second run has it). Medians of several runs, each as a fresh process."""

from __future__ import annotations

import shutil
import statistics
import sys

from tests.bench.context import Context
from tests.bench.procs import ROOT, reconciler_argv, run, warm_bytecode
from tests.bench.table import Row, seconds

RUNS = 9


def measure(ctx: Context) -> list[Row]:
    warm_bytecode()
    bare = _median([sys.executable, "-c", "pass"])
    helped = _median(reconciler_argv("--help"))
    quickstart = ctx.folder("quickstart")
    for part in ("specs", "data", "reconciler.yaml"):
        source = ROOT / part
        copy = shutil.copytree if source.is_dir() else shutil.copy2
        copy(source, quickstart / part)
    validate = reconciler_argv("validate", "--repo", str(quickstart))
    run(validate)  # caches the input's digest, as any second run finds it
    validated = _median(validate)
    over = helped - bare
    shown = f"median of {RUNS}"
    return [
        Row(
            "9",
            "reconciler --help, over `python -c pass`",
            "≤ 0.15 s",
            f"{seconds(over)} ({seconds(helped)} vs {seconds(bare)})",
            over <= 0.15,
            shown,
        ),
        Row("9", "validate, the quickstart repo", "≤ 0.25 s", seconds(validated), validated <= 0.25, shown),
    ]


def _median(argv: list[str]) -> float:
    return statistics.median(run(argv).seconds for _ in range(RUNS))
