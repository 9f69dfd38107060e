"""One message to one channel. `${VAR}`s in the URL and headers are expanded here, at the last
moment, and every reason a send failed is our own words: never the URL, a header or a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from reconciler.common.errors import MissingVariableError, UserError
from reconciler.engine.notify.messages import body
from reconciler.specs.models import NotificationSpec
from reconciler.specs.notify_fields import url_problem
from reconciler.specs.secrets import expand, sendable, variables_in
from reconciler.state.model import Notice

SEND_TIMEOUT = httpx.Timeout(10.0, connect=5.0)  # a hanging channel holds only the courier


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


def deliver(client: httpx.Client, target: Channel, notice: Notice, source: str) -> str | None:
    """None when the channel took it (any 2xx); else why not, in a few words."""
    content, content_type = body(notice, target.format, source)
    headers = {**target.headers, "Content-Type": content_type}
    try:
        response = client.post(target.url, content=content, headers=headers)
    except httpx.TimeoutException:
        return "timed out"
    except httpx.HTTPError as error:
        return _scrubbed(f"cannot connect ({type(error).__name__})", target)
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


def _scrubbed(text: str, target: Channel) -> str:
    for secret in target.secrets:
        text = text.replace(secret, "***")
    return text
