"""Webhooks out, like the real service: when a batch ends, a `batch.<status>` event is POSTed to
`webhook_url`, signed per Standard Webhooks (the `standardwebhooks` library) with
`webhook_secret`, and tried again with doubling waits on anything but a 2xx.

Batch statuses are computed lazily (lifecycle.py), so a thread looks at the unfinished
batches every tick. Batches that ended before webhooks were switched on are history: only
endings from then on are sent. Every try is counted (`webhook sent`, `webhook failed`).
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
USER_AGENT = "reconciler-sandbox-webhooks/1"


@dataclass(frozen=True)
class Delivery:
    event_id: str
    body: str
    tries: int = 0
    due: float = 0.0


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
        with httpx.Client(timeout=5.0, headers={"User-Agent": USER_AGENT}) as client:
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
            tried = replace(delivery, tries=delivery.tries + 1)
            if self._post(client, config, tried):
                continue
            if tried.tries < config.webhook_attempts:
                waiting.append(
                    replace(tried, due=now + config.webhook_retry_seconds * 2 ** (tried.tries - 1))
                )
            else:
                self._app.count("webhook dropped")
        self._queue = waiting

    def _post(self, client: httpx.Client, config: SandboxConfig, delivery: Delivery) -> bool:
        assert config.webhook_url is not None and config.webhook_secret is not None
        stamp = datetime.fromtimestamp(int(time.time()), tz=UTC)
        signature = Webhook(config.webhook_secret).sign(delivery.event_id, stamp, delivery.body)
        headers = {
            "webhook-id": delivery.event_id,
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
    event_id = f"evt_{uuid.uuid4().hex}"
    event = {
        "id": event_id,
        "object": "event",
        "type": f"batch.{status}",
        "created_at": int(ended),
        "data": {"id": batch_id},
    }
    return Delivery(event_id, json.dumps(event))
