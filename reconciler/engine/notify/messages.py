"""What a channel receives: a Slack message, or a CloudEvents 1.0 envelope (structured mode)."""

from __future__ import annotations

import json

from reconciler.state.model import Notice

CLOUDEVENTS_TYPE = "dev.reconciler.batchjob.{event}"
_MARKS = {"completed": ":white_check_mark:", "replaced": ":arrows_counterclockwise:"}


def summary(notice: Notice) -> str:
    """`nightly-eval failed: 0/3 done, 3 failed (batch_abc)`."""
    counts = notice.request_counts
    done = f"{counts.get('completed', 0)}/{counts.get('total', 0)} done"
    failed = f", {counts['failed']} failed" if counts.get("failed") else ""
    batches = f" ({', '.join(notice.batches)})" if notice.batches else ""
    if notice.event == "schedule_missed":
        return (
            f"{notice.job} missed its scheduled run {notice.slot} (starting_deadline passed): no run started"
        )
    verb = "was replaced by a new spec" if notice.event == "replaced" else notice.event
    return f"{notice.job} {verb}: {done}{failed}{batches}"


def body(notice: Notice, fmt: str, source: str) -> tuple[bytes, str]:
    """The bytes to POST and their content type."""
    if fmt == "slack":
        text = f"{_MARKS.get(notice.event, ':warning:')} {summary(notice)}"
        return json.dumps({"text": text}).encode(), "application/json"
    envelope = {
        "specversion": "1.0",
        "id": notice.id,
        "source": source,
        "type": CLOUDEVENTS_TYPE.format(event=notice.event),
        "subject": notice.job,
        "time": notice.at,
        "datacontenttype": "application/json",
        "data": {
            "job": notice.job,
            "event": notice.event,
            "status": notice.status,
            "generation": notice.generation,
            "slot": notice.slot,
            "request_counts": notice.request_counts,
            "batches": list(notice.batches),
            "summary": summary(notice),
        },
    }
    return json.dumps(envelope).encode(), "application/cloudevents+json"
