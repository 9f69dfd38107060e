"""The benchmark suite (issue 8): `python -m tests.bench [--quick] [--only ITEM ...]`.

Every figure is measured side by side with its floor or alternative in the same run, against
sandboxes started for the purpose, and printed as one table: target, measured value, met.
The CLI runs as a subprocess, as users run it; the sandbox runs as a separate process, so the
client's time and memory are not mixed with the server's.

Module map: procs (subprocesses, CPU) and peak (a process's own peak RSS), sandbox (an
external sandbox process), data (inputs and repos written fast), seed (thousands of live
batches), daemon (the watch daemon as a subprocess), context (sizes, work folder), table
(rows and rendering), and one module per item: validation (1), apply (2), plans (3),
alternatives and rivals (4), watch (5 and 7), memory (6), estimate (8); issue 19's: startup (9),
plans (10: against an SDK listing script, and with foreign batches), watch_scale (11), and
apply's row against a 16-thread SDK script; issue 24's: apply's first request against the
scripts' (first_request), plan's memory and state per job (10), and 100,000 jobs on the file
and PostgreSQL backends (huge, 13).
`tests/test_bench_ratios.py` asserts the count- and ratio-based parts at small scale in CI.
"""
