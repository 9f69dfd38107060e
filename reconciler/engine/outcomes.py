"""What became of each request: output and error files, downloaded once, read per part.

A request's outcome is `None` when it succeeded, else a reason.  The reasons `retry.on`
may name (documented in the README):

| reason           | when                                                              |
|------------------|-------------------------------------------------------------------|
| `batch_expired`  | the 24 h window ran out first (error file, `error.code`)          |
| `server_error`   | the provider answered it with a 5xx status                        |
| `rate_limited`   | the provider answered it with 429                                 |
| `batch_failed`   | the whole batch failed (e.g. `token_limit_exceeded`), so no answer; |
|                  | also Portkey's `file_upload_failed` and `batch_start_failed`      |

Other outcomes (`client_error` for a 4xx, or for an answer longer than the bound of one
result line, see lines.py; `batch_cancelled`) are final: sending them again would fail the
same way, or undo what the user asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container
from pathlib import Path
from urllib.parse import quote

from reconciler.api.reader import BatchReader
from reconciler.common import fileops
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.engine.lines import result_lines
from reconciler.plans.runs import file_part
from reconciler.state.model import BatchRecord


def classify(line: dict[str, object]) -> str | None:
    error = line.get("error")
    if isinstance(error, dict) and error:
        code = error.get("code")
        return code if code in ("batch_expired", "batch_cancelled") else "client_error"
    response = line.get("response")
    status = response.get("status_code") if isinstance(response, dict) else None
    if not isinstance(status, int):
        return "client_error"
    if status < 300:
        return None
    if status == 429:
        return "rate_limited"
    return "server_error" if status >= 500 else "client_error"


# Portkey's own terminal statuses: its upload to the provider, or the provider's batch start,
# failed.  Nothing ran, so the requests are as retryable as those of a failed batch.
UNANSWERED = {
    "failed": "batch_failed",
    "file_upload_failed": "batch_failed",
    "batch_start_failed": "batch_failed",
    "expired": "batch_expired",
}


def unanswered_reason(batch: BatchRecord) -> str:
    return UNANSWERED.get(batch.status, "batch_cancelled")


class WorkDir:
    """Downloaded result files under `<state dir>/work/<job>/<generation>[/<run>]/`."""

    def __init__(self, root: Path, job: str, generation: str, run: str | None = None) -> None:
        self.path = root / job / generation
        if run and run != DEFAULT_RUN:
            self.path = self.path / file_part(run)

    def result_files(self, batch: BatchRecord) -> list[Path]:
        return [target for _, target in self._targets(batch)]

    def download(self, reader: BatchReader, batch: BatchRecord) -> list[Path]:
        """Fetches a finished batch's output and error files, once; returns their paths."""
        self.path.mkdir(parents=True, exist_ok=True)
        for file_id, target in self._targets(batch):
            if not target.exists():
                with fileops.replacing(target) as out:
                    reader.download_file(file_id, out)
        return self.result_files(batch)

    def output_file(self, file_id: str) -> Path:
        """Where `download` keeps a result file (it may not be there)."""
        return self.path / f"{_file_name(file_id)}.jsonl"

    def download_one(self, reader: BatchReader, file_id: str, target: Path) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with fileops.replacing(target) as out:
            reader.download_file(file_id, out)

    def targets(self, batch: BatchRecord) -> list[tuple[str, Path]]:
        """(file id, where it is kept) for a batch's output and error files."""
        return self._targets(batch)

    def _targets(self, batch: BatchRecord) -> list[tuple[str, Path]]:
        ids = [batch.output_file_id, batch.error_file_id]
        return [(file_id, self.path / f"{_file_name(file_id)}.jsonl") for file_id in ids if file_id]

    def retry_input(self, part: int, retry: int) -> Path:
        """The one place a retry input's path is decided: written by engine/sources.py."""
        return self.path / f"part-{part}-retry-{retry}.jsonl"


def _file_name(file_id: str) -> str:
    """A file id is the server's word: quoted, it is one file name, never a path out of here."""
    name = quote(file_id, safe="")
    return name if len(name) <= 200 else hashlib.sha256(file_id.encode()).hexdigest()


def part_outcomes(
    attempts: list[tuple[BatchRecord, list[Path]]], sent: Container[str]
) -> dict[str, str | None]:
    """custom_id → final outcome over a part's attempts, oldest first; success is final. Only
    the part's own requests (`sent`): a line for any other is the server's mistake."""
    outcomes: dict[str, str | None] = {}
    for _, files in attempts:
        for path in files:
            for _, line in result_lines(path, sent):
                custom_id = str(line["custom_id"])
                if outcomes.get(custom_id, "") is not None:
                    outcomes[custom_id] = classify(line)
    return outcomes
