"""One message to one channel: what the channel receives (a Slack message, or a CloudEvents 1.0
envelope in structured mode), and the send.

`${VAR}`s in the URL and headers are expanded here, at the last moment, and every reason a send
failed is our own words: never the URL, a header or a value.  A send is bounded in time as a
whole, not per read: at its deadline its socket is shut down, so a channel that answers a byte
at a time cannot hold it. Only the answer's status is read, never its body: a channel
answering with gigabytes costs nothing.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from reconciler.api.transport import failure_words
from reconciler.common.errors import MissingVariableError, UserError
from reconciler.specs.fields import url_problem
from reconciler.specs.models import NotificationSpec
from reconciler.specs.secrets import expand, sendable, variables_in
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
    if notice.event != notice.status and notice.event == "failed":  # e.g. Portkey's batch_start_failed
        verb += f" ({notice.status})"
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


SEND_SECONDS = 10.0  # one message, whole: connecting, sending it, the answer's status
CONNECT_SECONDS = 5.0
# One connection per message (no keep-alive): each send's socket is its own to cut off.
CLIENT_LIMITS = httpx.Limits(max_keepalive_connections=0)
_SOCKET_EVENTS = ("connection.connect_tcp.complete", "connection.start_tls.complete")


@dataclass(frozen=True)
class Channel:
    name: str
    url: str
    headers: Mapping[str, str]
    format: str
    secrets: tuple[str, ...]  # the expanded values, scrubbed from any message


def channel(name: str, spec: NotificationSpec, env: Mapping[str, str]) -> Channel:
    """The channel with its variables expanded; UserError naming the variable when one is missing."""
    where = f"notification {name!r}"
    fields = {"url": spec.url, **{f"header {h}": value for h, value in spec.headers.items()}}
    for field, value in fields.items():
        for variable in variables_in(value):
            if not env.get(variable):
                state = "not set" if env.get(variable) is None else "empty"
                raise MissingVariableError(f"{where}: {field} needs ${{{variable}}}, which is {state}")
            if field != "url" and not sendable(env[variable]):
                raise UserError(
                    f"{where}: ${{{variable}}} contains a line break, control or non-ASCII character"
                )
    url = expand(spec.url, env)
    if problem := url_problem(url):
        raise UserError(f"{where}: url {problem}")
    headers = {header: expand(value, env) for header, value in spec.headers.items()}
    secrets = tuple(env[v] for value in fields.values() for v in variables_in(value))
    return Channel(name, url, headers, spec.format, secrets)


def deliver(
    client: httpx.Client, target: Channel, notice: Notice, source: str, ends_at: float, deadline: str
) -> str | None:
    """None when the channel took it (any 2xx) before `ends_at` (monotonic); else why not.
    `deadline` says what `ends_at` is, for the reason (`within 10s`)."""
    content, content_type = body(notice, target.format, source)
    headers = {**target.headers, "Content-Type": content_type}
    left = ends_at - time.monotonic()
    if left <= 0:
        return f"no time left {deadline}"
    timeout = httpx.Timeout(left, connect=min(CONNECT_SECONDS, left))
    with _Cutoff(left) as cutoff:
        try:
            request = client.build_request(
                "POST",
                target.url,
                content=content,
                headers=headers,
                timeout=timeout,
                extensions=cutoff.extensions,
            )
            with contextlib.closing(client.send(request, stream=True)) as response:
                status = response.status_code  # the body is never read
        except httpx.TimeoutException:
            return f"no answer {deadline}"
        except httpx.HTTPError as error:
            if cutoff.fired:
                return f"no answer {deadline}"
            return _scrubbed(failure_words(error), target)
    if 200 <= status < 300:
        return None
    return f"HTTP {status}"


class _Cutoff:
    """Shuts the request's sockets down `seconds` from now, waking any read or write on them."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    @property
    def extensions(self) -> dict[str, Any]:
        return {"trace": self._trace}

    def __enter__(self) -> _Cutoff:
        self._timer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._timer.cancel()

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: each socket this request opens, as it opens it."""
        if event not in _SOCKET_EVENTS:
            return
        stream = info.get("return_value")
        found = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(found, socket.socket):
            return
        with self._lock:
            self._sockets.append(found)
            late = self.fired
        if late:
            _shut(found)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for found in sockets:
            _shut(found)


def _shut(found: socket.socket) -> None:
    with contextlib.suppress(OSError):
        found.shutdown(socket.SHUT_RDWR)


def _scrubbed(text: str, target: Channel) -> str:
    for secret in target.secrets:
        text = text.replace(secret, "***")
    return text
