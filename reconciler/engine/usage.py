"""The bill after: tokens read from the `usage` of every output line, once per finished batch.

Each batch's output file is read once, streaming (from `.reconciler/work/` when retries or
results already downloaded it, else straight from the provider without keeping it), and its
sum is recorded in the job's state by batch id, so parts and retries add up and nothing is
counted twice. The run's prices are recorded when it starts: its cost is priced as launched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO, cast

from reconciler.api.batch import is_terminal
from reconciler.api.reader import BatchReader
from reconciler.common.errors import ApiStatusError
from reconciler.common.usage import TokenUsage
from reconciler.engine.outcomes import WorkDir
from reconciler.plans.changes import DesiredJob
from reconciler.state.model import JobState

GONE = (404, 410)  # an output file the provider no longer has


def meter_usage(job: DesiredJob, recorded: JobState, reader: BatchReader, work_root: Path) -> JobState:
    """The job's state with every finished batch's usage read, and the run's prices set."""
    if recorded.generation != job.generation:
        return recorded
    usage = dict(recorded.usage)
    work = WorkDir(work_root, job.name, job.generation)
    for batch in recorded.batches:
        if batch.batch_id in usage or not is_terminal(batch.status) or not batch.output_file_id:
            continue
        # results and retries read the output file from disk anyway: then keep it, else stream it
        if job.results_path or job.max_attempts > 1:
            work.download(reader, batch)
        usage[batch.batch_id] = _read_usage(batch.output_file_id, work, reader)
    prices = recorded.prices
    if prices is None and (recorded.batches or recorded.pending):
        prices = job.prices  # the run has started: these are the prices in force
    if usage == recorded.usage and prices == recorded.prices:
        return recorded
    return recorded.model_copy(update={"usage": usage, "prices": prices})


def _read_usage(file_id: str, work: WorkDir, reader: BatchReader) -> TokenUsage:
    tally = _UsageTally()
    kept = work.output_file(file_id)
    if kept.exists():
        with kept.open("rb") as stream:
            for raw in stream:
                tally.add_line(raw)
        return tally.usage
    try:
        reader.download_file(file_id, cast(BinaryIO, tally))
    except ApiStatusError as error:
        if error.status not in GONE:
            raise
        return TokenUsage(unread=True)
    tally.finish()
    return tally.usage


class _UsageTally:
    """A write-only stream that adds up the usage of each output line written to it."""

    def __init__(self) -> None:
        self.usage = TokenUsage()
        self._pending = b""

    def seek(self, offset: int) -> int:  # a download that starts over starts the count over
        self.usage, self._pending = TokenUsage(), b""
        return 0

    def truncate(self) -> int:
        return 0

    def write(self, chunk: bytes) -> int:
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        for raw in lines:
            self.add_line(raw)
        return len(chunk)

    def finish(self) -> None:
        self.add_line(self._pending)
        self._pending = b""

    def add_line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            line = json.loads(raw)
        except ValueError:
            return
        response = line.get("response") if isinstance(line, dict) else None
        body = response.get("body") if isinstance(response, dict) else None
        found = body.get("usage") if isinstance(body, dict) else None
        if isinstance(found, dict):
            self.usage = self.usage.plus(line_usage(found))


def line_usage(usage: dict[str, Any]) -> TokenUsage:
    """Chat/completions (`prompt_tokens`…), responses (`input_tokens`…) and embeddings alike."""
    read = _count(usage, "prompt_tokens", "input_tokens")
    written = _count(usage, "completion_tokens", "output_tokens")
    input_details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
    output_details = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
    return TokenUsage(
        input=read,
        cached_input=_count(input_details, "cached_tokens"),
        output=written,
        reasoning=_count(output_details, "reasoning_tokens"),
        requests=1,
    )


def _count(found: Any, *names: str) -> int:
    if not isinstance(found, dict):
        return 0
    for name in names:
        value = found.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return 0
