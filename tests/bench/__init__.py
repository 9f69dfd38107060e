"""The benchmark suite (issue 8): `python -m tests.bench [--quick] [--only ITEM ...]`.

Every figure is measured side by side with its floor or alternative in the same run, against
sandboxes started for the purpose, and printed as one table: target, measured value, met.
The CLI runs as a subprocess, as users run it; the sandbox runs as a separate process, so the
client's time and memory are not mixed with the server's.

Module map: procs (subprocesses, peak RSS, CPU), sandbox (an external sandbox process), data
(inputs and repos written fast), table (rows and rendering), and one module per item:
validation (1), apply (2), plans (3), alternatives (4), watch (5 and 7), memory (6).
`tests/test_bench_ratios.py` asserts the count- and ratio-based parts at small scale in CI.
"""
