"""`POST /webhooks/openai`: a provider says a batch ended; the daemon looks at once.

Verified by the `standardwebhooks` library (HMAC over `id.timestamp.body`, five minutes of
timestamp tolerance) against every Provider's `webhook_secret`. A verified event is taken at
its word for one thing only, the batch id: it must be a batch of ours, and then the loop runs
a pass that reads that batch from the API again (and plans its job). A replayed
`webhook-id` is acknowledged and not acted on twice.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from reconciler.daemon.board import Board, Metrics
from reconciler.engine.events import EventLog
from reconciler.specs.loader import LoadedProvider
from reconciler.specs.secrets import variables_in

MAX_BODY_BYTES = 256 * 1024  # a batch event is a few hundred bytes
TOLERANCE_SECONDS = 300  # the library's, for telling a stale delivery from a forged one
REMEMBERED_IDS = 10_000  # replays older than the 5-minute tolerance fail on their timestamp anyway


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


class WebhookInbox:
    def __init__(self, board: Board, refresh: Callable[[str], None], log: EventLog, metrics: Metrics) -> None:
        self.board, self.refresh, self.log, self.metrics = board, refresh, log, metrics
        self._verifiers: tuple[Webhook, ...] = ()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._said: set[str] = set()

    def configure(self, providers: Mapping[str, LoadedProvider], env: Mapping[str, str]) -> tuple[str, ...]:
        """Takes the secrets of the latest load; returns the providers whose webhooks are verified."""
        verifiers, names = [], []
        for name, loaded in sorted(providers.items()):
            reference = loaded.provider.spec.webhook_secret
            if reference is None:
                continue
            variable = variables_in(reference)[0]
            try:
                verifiers.append(Webhook(env.get(variable) or ""))
                names.append(name)
            except Exception:  # empty, or not base64: the library's own errors
                self._say(
                    f"provider {name!r}: webhook_secret ${{{variable}}} is not set or not a whsec_ secret; "
                    "its webhooks are refused"
                )
        self._verifiers = tuple(verifiers)
        return tuple(names)

    def receive(self, headers: Mapping[str, str], body: bytes) -> Answer:
        if not self._verifiers:
            return self.refused("not_configured", 404, "no Provider has a webhook_secret")
        if not any(self._verified(verifier, headers, body) for verifier in self._verifiers):
            return self.refused(_reason(headers), 401, "signature or timestamp not valid")
        event_id = {k.lower(): v for k, v in headers.items()}["webhook-id"]
        with self._lock:
            if event_id in self._seen:
                self.metrics.webhooks_received.labels(result="duplicate").inc()
                return Answer(200, {"status": "duplicate"})
            self._seen[event_id] = None
            while len(self._seen) > REMEMBERED_IDS:
                self._seen.popitem(last=False)
        return self._act(body)

    def refused(self, reason: str, status: int, message: str) -> Answer:
        self.metrics.webhooks_refused.labels(reason=reason).inc()
        return Answer(status, {"error": message})

    def _act(self, body: bytes) -> Answer:
        event = json.loads(body)  # verified, so it parsed once already
        kind = event.get("type") if isinstance(event, dict) else None
        data = event.get("data") if isinstance(event, dict) else None
        batch_id = data.get("id") if isinstance(data, dict) else None
        ours = (
            isinstance(kind, str)
            and kind.startswith("batch.")
            and batch_id in self.board.snapshot().batch_ids()
        )
        if not ours:
            self.metrics.webhooks_received.labels(result="ignored").inc()
            return Answer(200, {"status": "ignored"})
        self.metrics.webhooks_received.labels(result="refresh").inc()
        self.log.info("webhook", f"{kind} for {batch_id}: refreshing now", batch=batch_id, type=kind)
        self.refresh(str(batch_id))
        return Answer(200, {"status": "refreshing"})

    def _verified(self, verifier: Webhook, headers: Mapping[str, str], body: bytes) -> bool:
        try:
            verifier.verify(body, dict(headers))
        except (WebhookVerificationError, ValueError):  # ValueError: not UTF-8, not JSON, bad base64
            return False
        return True

    def _say(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self.log.error("webhook_secret", message)


def _reason(headers: Mapping[str, str]) -> str:
    """For the metric only: the verdict itself is the library's."""
    lowered = {k.lower() for k in headers}
    if not {"webhook-id", "webhook-timestamp", "webhook-signature"} <= lowered:
        return "unsigned"
    stamp = next(v for k, v in headers.items() if k.lower() == "webhook-timestamp")
    try:
        return "stale" if abs(time.time() - float(stamp)) > TOLERANCE_SECONDS else "signature"
    except ValueError:
        return "signature"
