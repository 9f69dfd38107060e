"""`python -m tests.bench [--quick] [--only 1 3 ...] [--markdown FILE] [--keep]`."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.bench.context import FULL, QUICK, Context
from tests.bench.table import Row, render_markdown, render_text, summary

# item → module with `measure(ctx) -> list[Row]`; 5 and 7 share the daemon module; item 3
# also measures issue 19's plan-against-a-listing-script rows (numbered 10)
ITEMS = {
    "1": ("validation", "measure"),
    "2": ("apply", "measure"),
    "3": ("plans", "measure"),
    "4": ("alternatives", "measure"),
    "5": ("watch", "measure_latency"),
    "6": ("memory", "measure"),
    "7": ("watch", "measure_idle"),
    "8": ("estimate", "measure"),
    # issue 19
    "9": ("startup", "measure"),
    "10": ("plans", "measure_with_foreign"),
    "11": ("watch_scale", "measure"),
    "12": ("embeddings", "measure"),
    # issue 23
    "13": ("reuse", "measure"),
    # issue 24
    "14": ("huge", "measure"),
    "15": ("daemon_scale", "measure"),
}


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    scale = QUICK if options.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="reconciler-bench-", dir=options.work_dir))
    ctx = Context(scale, work)
    rows: list[Row] = []
    started = time.perf_counter()
    try:
        for item in options.only or list(ITEMS):
            rows += _measure(item, ctx)
    finally:
        if options.keep:
            print(f"kept the work folder: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    heading = f"reconciler benchmarks ({scale.name} scale, {_machine()}, {elapsed:.0f} s)"
    print(f"\n{heading}\n\n{render_text(rows)}\n\n{summary(rows)}")
    if options.markdown:
        Path(options.markdown).write_text(f"{heading}\n\n{render_markdown(rows)}\n\n{summary(rows)}\n")
    return 0


def _measure(item: str, ctx: Context) -> list[Row]:
    module_name, function_name = ITEMS[item]
    module = importlib.import_module(f"tests.bench.{module_name}")
    measure: Callable[[Context], list[Row]] = getattr(module, function_name)
    print(f"item {item}: measuring ({module_name})…", file=sys.stderr, flush=True)
    begun = time.perf_counter()
    rows = measure(ctx)
    print(f"item {item}: done in {time.perf_counter() - begun:.0f} s", file=sys.stderr, flush=True)
    return rows


def _machine() -> str:
    return f"{os.cpu_count()} cores, Python {platform.python_version()}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Smaller sizes: a smoke run of every item.")
    parser.add_argument("--only", nargs="+", choices=list(ITEMS), metavar="ITEM", help="Items to run (1-13).")
    parser.add_argument("--markdown", metavar="FILE", help="Also write the table as Markdown.")
    parser.add_argument("--work-dir", metavar="DIR", help="Where the temporary work folder goes.")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder (inputs, repos, logs).")
    return parser


if __name__ == "__main__":
    sys.exit(main())
