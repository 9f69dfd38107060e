"""Subprocesses measured as users feel them: wall time, CPU time and peak RSS of one child.

`os.wait4` gives the rusage of exactly that child (not every child so far), so its
`ru_maxrss` is that process's own peak. Bytecode goes to a cache outside the tree: the
developer shell sets PYTHONDONTWRITEBYTECODE, which would make every run compile the
reconciler from source, and a user's installed package has its .pyc files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYCACHE = Path(tempfile.gettempdir()) / "reconciler-bench-pycache"
OWNER = "bench/reconciler"


def bench_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every measured subprocess: this checkout first, no colour, fixed owner."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    path = env.get("PYTHONPATH")
    env |= {
        "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT),
        "PYTHONPYCACHEPREFIX": str(PYCACHE),
        "NO_COLOR": "1",
        "RECONCILER_OWNER": OWNER,
    }
    return env | dict(extra or {})


def reconciler_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler", *args]


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    code: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    stdout: str
    stderr: str

    def check(self) -> Run:
        if self.code != 0:
            shown = " ".join(self.argv[1:])
            raise RuntimeError(f"`{shown}` exited {self.code}: {self.stderr.strip()[-2000:]}")
        return self


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 900.0,
    ok_codes: tuple[int, ...] = (0,),
) -> Run:
    """Runs `argv` to the end; raises unless it exits with one of `ok_codes`.

    `python -m MODULE` runs under tests.bench.peak, which reports the process's own peak RSS;
    for anything else the figure is wait4's, which may include this process's size."""
    with tempfile.TemporaryDirectory(prefix="bench-run-") as scratch:
        peak_file = Path(scratch) / "peak"
        launched = list(argv)
        if launched[1:2] == ["-m"] and len(launched) > 2:
            launched = [launched[0], "-m", "tests.bench.peak", str(peak_file), *launched[2:]]
        with (Path(scratch) / "out").open("w+b") as out, (Path(scratch) / "err").open("w+b") as err:
            started = time.perf_counter()
            process = subprocess.Popen(
                launched, stdout=out, stderr=err, env=dict(env or bench_env()), cwd=cwd
            )
            killer = threading.Timer(timeout, process.kill)  # a safety net, not a measurement
            killer.start()
            try:
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                killer.cancel()
            seconds = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            out.seek(0)
            err.seek(0)
            peak_kib = int(peak_file.read_text()) if peak_file.exists() else usage.ru_maxrss
            result = Run(
                argv=tuple(argv),
                code=process.returncode,
                seconds=seconds,
                cpu_seconds=usage.ru_utime + usage.ru_stime,
                peak_rss_mb=peak_kib / 1024,
                stdout=out.read().decode(errors="replace"),
                stderr=err.read().decode(errors="replace"),
            )
    if result.code not in ok_codes:
        raise RuntimeError(f"`{' '.join(argv[1:])}` exited {result.code}: {result.stderr.strip()[-2000:]}")
    return result


def best_of(times: int, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Run:
    """The fastest of `times` runs: on a shared 2-core machine noise only ever adds time."""
    runs = [run(argv, env=env) for _ in range(max(1, times))]
    return min(runs, key=lambda r: r.seconds)


def warm_bytecode() -> None:
    """Imports every command once, so timed runs load cached bytecode as an installed CLI does."""
    for command in ("validate", "plan", "apply", "reconcile", "status", "sandbox"):
        run(reconciler_argv(command, "--help"))


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU a live process has used so far (/proc/<pid>/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def peak_rss_mb_of(pid: int) -> float:
    """VmHWM of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss(pid: int) -> bool:
    """Starts VmHWM again from the current RSS (Linux `clear_refs` 5); False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True
