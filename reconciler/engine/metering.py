"""The bill after: tokens read from the `usage` of every output line, once per finished batch.

Each batch's output file is read once, streaming (from `.reconciler/work/` when retries or
results already downloaded it, else straight from the provider without keeping it), and its
sum is recorded in the job's state by batch id, so parts and retries add up and nothing is
counted twice. The run's prices are recorded when it starts: its cost is priced as launched.
Only lines for requests of the batch's part count, each line bounded (outcomes.py): what else a
server puts in the file is reported, never billed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Container
from pathlib import Path
from typing import Any, BinaryIO, cast

from reconciler.api.batch import is_terminal
from reconciler.api.reader import BatchReader
from reconciler.common.errors import ApiStatusError
from reconciler.common.usage import TokenUsage
from reconciler.engine.outcomes import MAX_LINE_BYTES, MIB, LineSplitter, WorkDir, result_lines
from reconciler.engine.retries import part_lines
from reconciler.plans.changes import DesiredJob
from reconciler.state.model import JobState

log = logging.getLogger("reconciler")
GONE = (404, 410)  # an output file the provider no longer has


def meter_usage(job: DesiredJob, recorded: JobState, reader: BatchReader, work_root: Path) -> JobState:
    """The job's state with every finished batch's usage read, and the run's prices set."""
    if recorded.generation != job.generation:
        return recorded
    usage = dict(recorded.usage)
    work = WorkDir(work_root, job.name, job.generation)
    parts = {part.index: part for part in job.part_specs}
    for batch in recorded.batches:
        if batch.batch_id in usage or not is_terminal(batch.status) or not batch.output_file_id:
            continue
        # results and retries read the output file from disk anyway: then keep it, else stream it
        if job.results_path or job.max_attempts > 1:
            work.download(reader, batch)
        part = parts.get(batch.part)
        sent = {custom_id for custom_id, _ in part_lines(Path(job.input_path), part)} if part else set()
        usage[batch.batch_id] = _read_usage(batch.output_file_id, work, reader, sent)
    prices = recorded.prices
    if prices is None and (recorded.batches or recorded.pending):
        prices = job.prices  # the run has started: these are the prices in force
    if usage == recorded.usage and prices == recorded.prices:
        return recorded
    return recorded.model_copy(update={"usage": usage, "prices": prices})


def _read_usage(file_id: str, work: WorkDir, reader: BatchReader, sent: Container[str]) -> TokenUsage:
    tally = _UsageTally(sent)
    kept = work.output_file(file_id)
    if kept.exists():
        for _, line in result_lines(kept, sent):  # what it skips, it reports once per file
            tally.add_usage(line)
        return tally.usage
    try:
        reader.download_file(file_id, cast(BinaryIO, tally))
    except ApiStatusError as error:
        if error.status not in GONE:
            raise
        return TokenUsage(unread=True)
    tally.finish()
    tally.report(file_id)
    return tally.usage


class _UsageTally:
    """A write-only stream that adds up the usage of each output line written to it."""

    def __init__(self, sent: Container[str]) -> None:
        self.sent = sent
        self.usage = TokenUsage()
        self.too_long = self.unsent = 0
        self._lines = LineSplitter()

    def seek(self, offset: int) -> int:  # a download that starts over starts the count over
        self.usage, self.too_long, self.unsent = TokenUsage(), 0, 0
        self._lines.reset()
        return 0

    def truncate(self) -> int:
        return 0

    def write(self, chunk: bytes) -> int:
        for raw in self._lines.feed(chunk):
            self.add_line(raw)
        return len(chunk)

    def finish(self) -> None:
        for raw in self._lines.finish():
            self.add_line(raw)

    def add_line(self, raw: bytes | None) -> None:
        if raw is None:
            self.too_long += 1
            return
        if not raw.strip():
            return
        try:
            line = json.loads(raw)
        except ValueError:
            return
        if not isinstance(line, dict):
            return
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or custom_id not in self.sent:
            self.unsent += 1
            return
        self.add_usage(line)

    def add_usage(self, line: dict[str, Any]) -> None:
        response = line.get("response")
        body = response.get("body") if isinstance(response, dict) else None
        found = body.get("usage") if isinstance(body, dict) else None
        if isinstance(found, dict):
            self.usage = self.usage.plus(line_usage(found))

    def report(self, file_id: str) -> None:
        if self.too_long:
            log.warning(
                "usage of %s: %d line(s) over the %d MiB bound of one result line not counted",
                file_id,
                self.too_long,
                MAX_LINE_BYTES // MIB,
            )
        if self.unsent:
            log.warning("usage of %s: %d line(s) for requests never sent not counted", file_id, self.unsent)


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
