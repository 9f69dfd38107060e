"""The checks behind the fields of a `Notification`, and of a Provider's `webhook_secret`.

A notification URL is usually itself the secret (a Slack webhook URL grants posting), so
no message here ever shows a URL or a secret's value: only which rule it broke.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from reconciler.specs import secrets

EventName = Literal["failed", "expired", "completed", "replaced", "cancelled", "schedule_missed"]
EVENT_NAMES: tuple[EventName, ...] = (
    "failed",
    "expired",
    "completed",
    "replaced",
    "cancelled",
    "schedule_missed",
)
_VARIABLE_ONLY = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_GLOB = re.compile(r"[a-z0-9*?\[\]!-]{1,63}")


def _invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError("reconciler", message)


def _variable_only(value: str) -> str:
    if not _VARIABLE_ONLY.fullmatch(value):
        raise _invalid(
            "write the secret as ${VAR}, read from the environment at run time; never the secret itself"
        )
    return value


def _notify_url(value: str) -> str:
    problem = secrets.syntax_problem(value)
    if problem:
        raise _invalid(problem)
    if secrets.variables_in(value):
        return value  # checked once expanded, at send time
    if problem := url_problem(value):
        raise _invalid(problem)
    return value


def url_problem(value: str) -> str | None:
    """What keeps `value` from being a URL to POST to; never quotes it."""
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host (or ${VAR} holding one)"
    if any(char in value for char in "\r\n\0 "):
        return "a URL may not hold spaces or line breaks"
    return None


def _job_glob(value: str) -> str:
    if not _GLOB.fullmatch(value):
        raise _invalid(
            f"{value[:60]!r} is not a job name pattern: use lowercase letters, digits, '-', '*', '?'"
        )
    return value


WebhookSecret = Annotated[
    str, AfterValidator(_variable_only), Field(json_schema_extra={"pattern": _VARIABLE_ONLY.pattern})
]
NotifyUrl = Annotated[str, AfterValidator(_notify_url)]
JobGlob = Annotated[str, AfterValidator(_job_glob)]
