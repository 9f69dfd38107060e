"""A command's peak resident memory, as the kernel measured it: the command runs under a small
Python wrapper whose only child it is, and the wrapper reports `ru_maxrss` of its children.

    measured = run_measured([sys.executable, "-m", "reconciler", ...], env=...)
    assert measured.peak_bytes < 300 * MIB

Nothing is sampled, so a short peak is never missed and a loaded machine cannot change it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MIB = 1 << 20
_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"  # KiB on Linux
    "open(sys.argv[1], 'w').write(str(peak * 1024))\n"
    "sys.exit(code)\n"
)


@dataclass(frozen=True)
class Measured:
    returncode: int
    stdout: str
    stderr: str
    peak_bytes: int
    seconds: float


def run_measured(argv: list[str], *, env: dict[str, str], scratch: Path, timeout: float = 600) -> Measured:
    """Runs `argv` to its end (at most `timeout` seconds); `scratch` holds the wrapper's report."""
    scratch.mkdir(parents=True, exist_ok=True)
    peak_file = scratch / "peak-rss"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(peak_file), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    took = time.monotonic() - started
    return Measured(done.returncode, done.stdout, done.stderr, int(peak_file.read_text()), took)
