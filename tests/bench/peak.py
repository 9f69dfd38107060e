"""`python -m tests.bench.peak OUT MODULE ARGS…`: runs MODULE as `python -m MODULE ARGS…` would,
then writes this process's own peak RSS (VmHWM, KiB) to OUT as it exits.

Why not the parent's `wait4` rusage: Linux carries `ru_maxrss` across exec, so a child
forked from a benchmark process that has grown reports the parent's size, not its own.
VmHWM belongs to the address space the exec created.
"""

from __future__ import annotations

import atexit
import runpy
import sys
from pathlib import Path


def _write_peak(out: Path) -> None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            out.write_text(line.split()[1])


def main() -> None:
    out, module, *args = sys.argv[1:]
    atexit.register(_write_peak, Path(out))
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
