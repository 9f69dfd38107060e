"""Item 4: the same work done three ways, each against its own fresh sandbox with the same
knobs: submit N new jobs, then look at every job's status once (after the batches finished).

- ours: `reconciler apply --auto-approve`, then `reconciler reconcile`;
- a straightforward script on the official `openai` SDK: upload + create per job in a loop,
  then one retrieve per job;
- `batchwizard` from PyPI (`submit`, then `watch`), in a throwaway venv: it has no base-URL
  option of its own, but its OpenAI client is the official SDK, which reads OPENAI_BASE_URL.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.bench.context import Context
from tests.bench.data import repo_with_jobs
from tests.bench.procs import bench_env, reconciler_argv, run, warm_bytecode
from tests.bench.rivals import SDK_SCRIPT, batchwizard
from tests.bench.sandbox import FAST_TIMELINE, ExternalSandbox, external_sandbox, total
from tests.bench.table import Row, info, ratio, seconds


@dataclass(frozen=True)
class Outcome:
    tool: str
    submit_seconds: float
    observe_seconds: float
    requests: int
    note: str = ""

    @property
    def seconds(self) -> float:
        return self.submit_seconds + self.observe_seconds


def measure(ctx: Context) -> list[Row]:
    warm_bytecode()
    jobs, latency = ctx.scale.alt_jobs, ctx.scale.latency
    ours = _run_ours(ctx)
    others = [_run_sdk(ctx)]
    wizard = _run_batchwizard(ctx)
    rows = [
        info("4", f"{o.tool}: {jobs} jobs submitted, then observed once", _shown(o), o.note)
        for o in [ours, *others, *([wizard] if isinstance(wizard, Outcome) else [])]
    ]
    if isinstance(wizard, Outcome):
        others.append(wizard)
    else:
        rows.append(info("4", "batchwizard", f"not measured: {wizard}"))
    for other in others:
        rows.append(_versus("requests", other.tool, other.requests / ours.requests))
        rows.append(_versus("wall time", other.tool, other.seconds / ours.seconds))
    rows.append(info("4", "latency injected on every request", f"{latency * 1000:.0f} ms"))
    return rows


def _versus(what: str, tool: str, times: float) -> Row:
    return Row("4", f"{what}: {tool} / ours", "> 1x (we win)", ratio(times), times > 1)


def _shown(outcome: Outcome) -> str:
    return (
        f"{outcome.requests} requests, {seconds(outcome.seconds)} "
        f"({seconds(outcome.submit_seconds)} + {seconds(outcome.observe_seconds)})"
    )


def _run_ours(ctx: Context) -> Outcome:
    folder = ctx.folder("alt-ours")
    repo = repo_with_jobs(folder / "repo", ctx.scale.alt_jobs)
    with _sandbox(ctx, folder) as sandbox:
        env = bench_env({"RECONCILER_SANDBOX_URL": sandbox.base_url})
        submitted = run(reconciler_argv("apply", "--auto-approve", *repo.args()), env=env)
        requests = _requests_then_settle(sandbox)
        observed = run(reconciler_argv("reconcile", *repo.args()), env=env)
        requests += total(sandbox.counts())
    return Outcome("reconciler", submitted.seconds, observed.seconds, requests)


def _run_sdk(ctx: Context) -> Outcome:
    folder = ctx.folder("alt-sdk")
    repo = repo_with_jobs(folder / "repo", ctx.scale.alt_jobs)
    script = folder / "sdk_script.py"
    script.write_text(SDK_SCRIPT)
    ids = folder / "ids.txt"
    with _sandbox(ctx, folder) as sandbox:
        env = bench_env({"OPENAI_BASE_URL": sandbox.base_url, "OPENAI_API_KEY": "sk-bench"})
        submitted = run([sys.executable, str(script), "submit", str(repo.data), str(ids)], env=env)
        requests = _requests_then_settle(sandbox)
        observed = run([sys.executable, str(script), "observe", str(repo.data), str(ids)], env=env)
        requests += total(sandbox.counts())
    return Outcome("openai SDK script", submitted.seconds, observed.seconds, requests)


def _run_batchwizard(ctx: Context) -> Outcome | str:
    executable, trouble = batchwizard()
    if executable is None:
        return trouble
    folder = ctx.folder("alt-batchwizard")
    repo = repo_with_jobs(folder / "repo", ctx.scale.alt_jobs)
    with _sandbox(ctx, folder) as sandbox:
        env = bench_env(
            {
                "OPENAI_BASE_URL": sandbox.base_url,
                "OPENAI_API_KEY": "sk-bench",
                "XDG_CONFIG_HOME": str(folder / "config"),  # its job manifest, kept in the work folder
                "COLUMNS": "200",
            }
        )
        submitted = run([executable, "submit", str(repo.data)], env=env, cwd=folder)
        requests = _requests_then_settle(sandbox)
        observed = run(
            [executable, "watch", "--output-directory", str(folder / "results")], env=env, cwd=folder
        )
        requests += total(sandbox.counts())
    return Outcome(
        "batchwizard 0.5.0",
        submitted.seconds,
        observed.seconds,
        requests,
        "5 jobs at a time (its default); watch also downloads each output",
    )


def _requests_then_settle(sandbox: ExternalSandbox) -> int:
    """Requests so far; then let the batches finish, outside any measured run."""
    made = total(sandbox.counts())
    time.sleep(0.3)
    sandbox.settle()
    sandbox.reset_counts()
    return made


def _sandbox(ctx: Context, folder: Path) -> contextlib.AbstractContextManager[ExternalSandbox]:
    return external_sandbox(folder / "sandbox", latency_seconds=ctx.scale.latency, **FAST_TIMELINE)
