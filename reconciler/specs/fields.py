"""The checks behind each spec field, and the sentences a user reads when one fails.

Each field's check is a validator whose message is the text the user reads: names, endpoints,
paths, metadata, provider URLs and headers, sizes; a job's time fields (cron expression, time
zone, durations, run label, the expiry of its uploads); the fields of a `Notification` and a
Provider's `webhook_secret`.  A notification URL is usually itself the secret (a Slack webhook
URL grants posting), so no message about one ever shows a URL or a secret's value: only which
rule it broke.  pydantic's own errors are worded for YAML here too (`error_message`), and the
"did you mean" of every name a user types is found here (`close_match`, `closest`).
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from pydantic_core import ErrorDetails, PydanticCustomError

from reconciler.common import limits
from reconciler.common.ownership import RESERVED_KEYS, RESERVED_PREFIX
from reconciler.specs import secrets


def close_match(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` was most likely meant to be, or None when none is close (difflib's
    ratio under 0.6).  Every name a user types that names nothing is looked up here: a key, a
    kind, an endpoint, a schedule macro, a Provider, a job (`--target`, `status JOB`, …)."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def closest(word: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` when a choice is close, else ''."""
    match = close_match(word, choices)
    return f"; did you mean {match!r}?" if match else ""


def error_message(error: ErrorDetails, model: type[BaseModel]) -> str:
    """The sentence a user reads for one pydantic error; pydantic's own wording as a fallback."""
    kind = error["type"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        known = known_keys(model, error["loc"][:-1])
        hint = closest(str(error["loc"][-1]), known) or f"; known keys: {', '.join(known)}"
        return "unknown key" + (hint if known else "")
    if kind == "string_type":
        return f"must be a string; put quotes around the {'key' if error['loc'][-1] == '[key]' else 'value'}"
    if kind in ("dict_type", "model_type"):
        return "must be a mapping of key: value"
    if kind == "bool_type":
        return "must be true or false"
    if kind == "literal_error" and isinstance(error.get("input"), str):
        choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        return error["msg"].replace("Input should be", "must be") + closest(error["input"], choices)
    return error["msg"].replace("Input should be", "must be")


def known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed in the mapping at `loc` (aliases as written in YAML)."""
    for part in loc:
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        options = (field.annotation, *get_args(field.annotation)) if field else ()  # unwraps `X | None`
        nested = [o for o in options if isinstance(o, type) and issubclass(o, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return [field.alias or name for name, field in model.model_fields.items()]


ALLOWED_ENDPOINTS: tuple[str, ...] = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
COMPLETION_WINDOWS = ("24h",)
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_NAME_CHARS = 63
MAX_MODEL_CHARS = 200
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers the HTTP client sets for each request itself, and must: it frames every body (its
# length, chunking, encoding, and its type with the multipart boundary of an upload), names the
# host from base_url (the TLS name and the Host must agree), keeps the connection (hop-by-hop
# headers, RFC 9110 section 7.6.1), and decodes only what it asked for.  A value from a spec
# would be sent beside the client's, or over it: a wrong Content-Length is a protocol error
# before the request leaves, a fixed Content-Type breaks every upload.
RESERVED_HEADERS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "content-type",
        "content-encoding",
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "accept-encoding",
    }
)


def _invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError("reconciler", message)


def _show(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _name(value: str) -> str:
    if len(value) > MAX_NAME_CHARS:
        raise _invalid(f"{len(value)} characters; a name has at most {MAX_NAME_CHARS}")
    if not re.fullmatch(NAME_PATTERN, value):
        raise _invalid(
            f"{_show(value)} is not a valid name: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _endpoint(value: str) -> str:
    if value not in ALLOWED_ENDPOINTS:
        hint = closest(value, ALLOWED_ENDPOINTS) or f"; use one of {', '.join(ALLOWED_ENDPOINTS)}"
        raise _invalid(f"{_show(value)} is not a Batch API endpoint{hint}")
    return value


def _window(value: str) -> str:
    if value not in COMPLETION_WINDOWS:
        raise _invalid(f"{_show(value)} is not supported; the Batch API only accepts '24h'")
    return value


def _input(value: str) -> str:
    if not value.strip() or "\0" in value:
        raise _invalid("must be the path of a JSONL file, relative to this spec file")
    if _anchored(value) or value[0] == "~":
        raise _invalid(f"{_show(value)} is absolute; write it relative to this spec file")
    return value


def _anchored(value: str) -> bool:
    """Absolute on POSIX or on Windows (what pathlib calls an anchor): a leading slash or
    backslash (a root, or a UNC share), or a drive letter. Said without pathlib: two paths
    built per spec were a twentieth of loading one from the spec cache."""
    return value[:1] in ("/", "\\") or (value[1:2] == ":" and value[:1] in string.ascii_letters)


def _results(value: str) -> str:
    value = _input(value)
    unknown = set(re.findall(r"{([^}]*)}", value)) - {"job", "run"}
    if unknown or value.count("{") != value.count("}"):
        raise _invalid("only {job} and {run} may be filled in; write other braces nowhere")
    return value


def _metadata_key(value: str) -> str:
    if not value or len(value) > limits.MAX_METADATA_KEY_CHARS:
        raise _invalid(f"a metadata key has 1 to {limits.MAX_METADATA_KEY_CHARS} characters")
    if value.startswith(RESERVED_PREFIX):
        raise _invalid(f"keys starting with '{RESERVED_PREFIX}' are reserved for the reconciler")
    return value


def _metadata_value(value: str) -> str:
    if len(value) > limits.MAX_METADATA_VALUE_CHARS:
        limit = limits.MAX_METADATA_VALUE_CHARS
        raise _invalid(f"{len(value)} characters; a metadata value has at most {limit}")
    return value


def _metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > limits.MAX_USER_METADATA_PAIRS:
        raise _invalid(
            f"{len(value)} pairs; at most {limits.MAX_USER_METADATA_PAIRS} "
            f"(the Batch API allows {limits.MAX_METADATA_PAIRS}, the reconciler uses "
            f"{len(RESERVED_KEYS)})"
        )
    return value


def _base_url(value: str) -> str:
    if "${" in value:
        raise _invalid("variables are only expanded in headers, not in base_url")
    try:
        parts = urlsplit(value)
        has_credentials = parts.username is not None or parts.password is not None
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError:
        raise _invalid("not a valid URL; write e.g. https://api.openai.com/v1") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid("must be an http:// or https:// URL with a host")
    if has_credentials or parts.query or parts.fragment:
        # never echo the URL: whatever is in it may be a secret
        raise _invalid("must hold no user:password@, ?query or #fragment; put secrets in headers")
    return value


def _header_name(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise _invalid(f"{_show(value)} is not a valid HTTP header name")
    if value.lower() in RESERVED_HEADERS:
        raise _invalid(f"{value} is set by the HTTP client for each request; remove it from headers")
    return value


def _header_value(value: str) -> str:
    if any(char in value for char in "\r\n\0"):
        raise _invalid("a header value must be one line")
    if not secrets.sendable(value):
        raise _invalid("a header value may hold only printable ASCII characters")
    problem = secrets.syntax_problem(value)
    if problem:
        raise _invalid(problem)
    return value


def _headers(value: dict[str, str]) -> dict[str, str]:
    seen: set[str] = set()
    for header in value:
        if header.lower() in seen:
            raise _invalid(f"header {header} appears twice (header names ignore case)")
        seen.add(header.lower())
    return value


def _model_name(value: str) -> str:
    if not value.strip() or len(value) > MAX_MODEL_CHARS:
        raise _invalid(f"a model name has 1 to {MAX_MODEL_CHARS} characters, as the request bodies write it")
    return value


def _schema(**extra: Any) -> Any:
    return Field(json_schema_extra=extra)


Name = Annotated[str, AfterValidator(_name), _schema(pattern=NAME_PATTERN, maxLength=MAX_NAME_CHARS)]
MetadataKey = Annotated[
    str,
    AfterValidator(_metadata_key),
    _schema(maxLength=limits.MAX_METADATA_KEY_CHARS, **{"not": {"pattern": f"^{RESERVED_PREFIX}"}}),
]
MetadataValue = Annotated[
    str, AfterValidator(_metadata_value), _schema(maxLength=limits.MAX_METADATA_VALUE_CHARS)
]
HeaderName = Annotated[str, AfterValidator(_header_name)]
ModelName = Annotated[str, AfterValidator(_model_name), _schema(maxLength=MAX_MODEL_CHARS)]
HeaderValue = Annotated[str, AfterValidator(_header_value)]


def _byte_size(value: int | str) -> int:
    """`200MB`, `1.5GB`, `512KiB` or a plain byte count."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", str(value), re.IGNORECASE)
        if not match:
            raise _invalid(f"{_show(str(value))} is not a size; write e.g. 200MB or 50MiB")
        unit = (match.group(2) or "B").upper()
        factor = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
        size = int(float(match.group(1)) * factor[unit])
    if not 1 <= size <= limits.MAX_INPUT_BYTES:
        raise _invalid(
            f"must be between 1 byte and {limits.MAX_INPUT_BYTES:,} bytes (200 MB, the API's limit)"
        )
    return size


RetryReason = Literal["batch_expired", "server_error", "rate_limited", "batch_failed"]
DEFAULT_RETRY_ON: list[RetryReason] = ["batch_expired", "server_error", "rate_limited"]


Endpoint = Annotated[str, AfterValidator(_endpoint), _schema(enum=list(ALLOWED_ENDPOINTS))]
CompletionWindow = Annotated[str, AfterValidator(_window), _schema(enum=list(COMPLETION_WINDOWS))]
RepoFile = Annotated[str, AfterValidator(_input)]
ResultsFile = Annotated[str, AfterValidator(_results)]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    AfterValidator(_metadata),
    _schema(maxProperties=limits.MAX_USER_METADATA_PAIRS),
]
ByteSize = Annotated[int, BeforeValidator(_byte_size), _schema(type=["integer", "string"])]
BaseUrl = Annotated[str, AfterValidator(_base_url), _schema(format="uri")]
Headers = Annotated[dict[HeaderName, HeaderValue], AfterValidator(_headers)]


# The shorthands Kubernetes CronJob accepts for a schedule (its cron parser's descriptors, which
# Vixie cron has too), as the five fields each stands for.  cronsim reads none of them.
CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_SCHEMA_PATTERN = rf"^\s*({'|'.join(CRON_MACROS)}|\S+(\s+\S+){{4}})\s*$"


def cron_fields(expression: str) -> str:
    """A schedule as cronsim reads it: the five fields a macro stands for, else the expression."""
    return CRON_MACROS.get(expression.strip(), expression)


def _cron(value: str) -> str:
    macro = value.strip()
    if macro.startswith("@"):
        if macro not in CRON_MACROS:
            known = ", ".join(CRON_MACROS)
            hint = closest(macro, list(CRON_MACROS)) or f"; use one of {known}, or five cron fields"
            raise _invalid(f"{_show(value)} is not a schedule macro{hint}")
        return value
    fields = value.split()
    if len(fields) != 5:
        raise _invalid(
            f"{_show(value)} has {len(fields)} fields; write five (minute hour day month weekday) "
            "or a macro such as @daily"
        )
    try:
        CronSim(value, datetime.now(UTC))
    except (CronSimError, ValueError) as error:
        raise _invalid(f"{_show(value)} is not a cron expression ({error})") from None
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid(f"{_show(value)} is not an IANA time zone; write e.g. Europe/Berlin or UTC") from None
    return value


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


MAX_DURATION_SECONDS = int(limits.LONGEST)  # no wait of this tool is meant to be longer


def _duration(value: int | str) -> int:
    """`2h`, `30m`, `1d`, `90s`, or seconds; at least one second, at most a year (366d)."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", str(value))
        if not match:
            raise _invalid(f"{_show(str(value))} is not a duration; write e.g. 2h, 30m, 1d or 90s")
        seconds = int(match.group(1)) * DURATION_UNITS[match.group(2)]
    if seconds < 1:
        raise _invalid("must be at least one second")
    if seconds > MAX_DURATION_SECONDS:
        raise _invalid("must be at most 366d (a year)")
    return seconds


def _file_expiry(seconds: int) -> int:
    if not limits.MIN_FILE_EXPIRY_SECONDS <= seconds <= limits.MAX_FILE_EXPIRY_SECONDS:
        raise _invalid("must be between 1h and 30d (what the Files API accepts), e.g. 7d")
    return seconds


Cron = Annotated[str, AfterValidator(_cron), _schema(pattern=_CRON_SCHEMA_PATTERN)]
TimeZone = Annotated[str, AfterValidator(_timezone)]
Duration = Annotated[
    int,
    BeforeValidator(_duration),
    _schema(type=["integer", "string"], pattern=r"^\d+[smhd]$", maximum=MAX_DURATION_SECONDS),
]
FileExpiry = Annotated[Duration, AfterValidator(_file_expiry)]
RunLabel = Annotated[str, Field(min_length=1, max_length=200)]


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
