"""How big each measurement is (the issue's sizes, or a quick smoke run), and the work folder."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.data import BenchRepo, make_repo, write_chat_input

MIB = 1024 * 1024


@dataclass(frozen=True)
class Scale:
    name: str
    big_requests: int  # item 1 and 6: the input (4 KB lines)
    output_mib: int  # item 6: size of the output whose results are written
    apply_jobs: int  # item 2
    latency: float  # items 2 and 4: injected per-request latency, seconds
    plan_owned: int  # item 3
    plan_foreign: int
    curve: tuple[int, ...]  # item 3: plan time for this many converged specs
    alt_jobs: int  # item 4
    watch_trials: int  # item 5
    idle_jobs: int  # item 7
    idle_seconds: float
    repeats: int  # timed runs per figure; the best is kept
    lookup_jobs: int  # item 10 (plan) and 11 (watch): converged jobs…
    lookup_foreign: int  # …and foreign batches newer than theirs
    huge_jobs: int  # item 14: converged jobs, file and PostgreSQL


FULL = Scale(
    name="full",
    big_requests=50_000,
    output_mib=200,
    apply_jobs=100,
    latency=0.05,
    plan_owned=1_000,
    plan_foreign=2_000,
    curve=(100, 1_000, 10_000),
    alt_jobs=100,
    watch_trials=20,
    idle_jobs=1_000,
    idle_seconds=60.0,
    repeats=2,
    lookup_jobs=1_000,
    lookup_foreign=450,
    huge_jobs=100_000,
)
QUICK = Scale(
    name="quick",
    big_requests=5_000,
    output_mib=20,
    apply_jobs=100,
    latency=0.05,
    plan_owned=200,
    plan_foreign=400,
    curve=(100, 300, 1_000),
    alt_jobs=30,
    watch_trials=10,
    idle_jobs=200,
    idle_seconds=10.0,
    repeats=1,
    lookup_jobs=200,
    lookup_foreign=90,
    huge_jobs=2_000,
)


@dataclass
class Context:
    scale: Scale
    work: Path
    _big: BenchRepo | None = field(default=None, repr=False)

    def folder(self, name: str) -> Path:
        """A fresh folder for one measurement."""
        path = self.work / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def big_input_repo(self) -> BenchRepo:
        """One repo with the big chat input (written once; items 1 and 6 share it)."""
        if self._big is None:
            repo = make_repo(self.folder("big-input"))
            write_chat_input(repo.data / "big.jsonl", self.scale.big_requests)
            repo.write_job("big-eval", "big.jsonl")
            self._big = repo
        return self._big
