"""Webhooks out, like the real service: when a batch ends, a `batch.<status>` event is POSTed to
`webhook_url`, signed per Standard Webhooks (the `standardwebhooks` library) with
`webhook_secret`, and tried again on anything but a 2xx answered within a few seconds.

As OpenAI's webhook guide shows them: the `webhook-id` header is a delivery id (`wh_…`), the
same on every try of one delivery and distinct from the event's own `evt_…` id in the body;
`webhook-timestamp` is the try's; the User-Agent is OpenAI's. Failed deliveries are retried
"with exponential backoff for up to 72 hours": the waits double from `webhook_retry_seconds`
and no try is made later than `webhook_retry_window_seconds` after the first (OpenAI does not
publish its intervals; tests shrink both knobs). Deliveries wait in memory: a sandbox stopped
meanwhile forgets them.

Batch statuses are computed lazily (lifecycle.py), so a thread looks at the unfinished
batches every tick. Batches that ended before webhooks were switched on are history: only
endings from then on are sent. Every try is counted (`webhook sent`, `webhook failed`), and a
delivery given up (`webhook dropped`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from reconciler.sandbox.app import App
from reconciler.sandbox.config import SandboxConfig
from reconciler.sandbox.lifecycle import moment

TICK_SECONDS = 0.05
ENDINGS = ("completed", "failed", "expired", "cancelled")
# As in the example deliveries of OpenAI's webhook guide (developers.openai.com/api/docs/guides/webhooks).
USER_AGENT = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"
ANSWER_SECONDS = 5.0  # "doesn't respond within a few seconds" counts as a failed try


@dataclass(frozen=True)
class Delivery:
    delivery_id: str  # the `webhook-id` header: the same on every try
    body: str
    tries: int = 0
    first_try: float | None = None
    due: float = 0.0


def retry_offsets(config: SandboxConfig) -> list[float]:
    """When each try of a delivery nobody takes happens, in seconds after the first."""
    offsets = [0.0]
    while config.webhook_attempts is None or len(offsets) < config.webhook_attempts:
        following = offsets[-1] + config.webhook_retry_seconds * 2 ** (len(offsets) - 1)
        if following > config.webhook_retry_window_seconds:
            break
        offsets.append(following)
    return offsets


class WebhookSender:
    def __init__(self, app: App) -> None:
        self._app = app
        self._stop = threading.Event()
        self._ended: set[str] = set()
        self._queue: list[Delivery] = []
        self._since: float | None = None  # when webhooks were switched on
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        with httpx.Client(timeout=ANSWER_SECONDS, headers={"User-Agent": USER_AGENT}) as client:
            while not self._stop.wait(TICK_SECONDS):
                config = self._app.config
                if config.webhook_url is None or config.webhook_secret is None:
                    self._since = None
                    continue
                now = time.time()
                self._since = now if self._since is None else self._since
                self._find_endings(now, self._since)
                self._deliver_due(client, config, now)

    def _find_endings(self, now: float, since: float) -> None:
        for batch_id in self._app.batches.ids():
            if batch_id in self._ended:
                continue
            record = self._app.batches.get(batch_id, now)
            at = moment(record, now) if record is not None else None
            if at is None or at.status not in ENDINGS:
                continue
            self._ended.add(batch_id)
            ended = at.events.get(at.status, now)
            if ended >= since:
                self._queue.append(_delivery(batch_id, at.status, ended))

    def _deliver_due(self, client: httpx.Client, config: SandboxConfig, now: float) -> None:
        waiting = []
        for delivery in self._queue:
            if delivery.due > now:
                waiting.append(delivery)
                continue
            first = delivery.first_try if delivery.first_try is not None else now
            tried = replace(delivery, tries=delivery.tries + 1, first_try=first)
            if self._post(client, config, tried):
                continue
            offsets = retry_offsets(config)  # from the first try: a slow tick never shifts the plan
            if tried.tries < len(offsets):
                waiting.append(replace(tried, due=first + offsets[tried.tries]))
            else:
                self._app.count("webhook dropped")
        self._queue = waiting

    def _post(self, client: httpx.Client, config: SandboxConfig, delivery: Delivery) -> bool:
        assert config.webhook_url is not None and config.webhook_secret is not None
        stamp = datetime.fromtimestamp(int(time.time()), tz=UTC)
        signature = Webhook(config.webhook_secret).sign(delivery.delivery_id, stamp, delivery.body)
        headers = {
            "webhook-id": delivery.delivery_id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": signature,
            "Content-Type": "application/json",
        }
        self._app.count("webhook sent")
        try:
            response = client.post(config.webhook_url, content=delivery.body.encode(), headers=headers)
            delivered = 200 <= response.status_code < 300
        except httpx.HTTPError:
            delivered = False
        if not delivered:
            self._app.count("webhook failed")
        return delivered


def _delivery(batch_id: str, status: str, ended: float) -> Delivery:
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": f"batch.{status}",
        "created_at": int(ended),
        "data": {"id": batch_id},
    }
    return Delivery(f"wh_{uuid.uuid4().hex}", json.dumps(event))
