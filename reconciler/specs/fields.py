"""The checks behind each spec field: a validator whose message is the text the user reads."""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from reconciler.common import limits
from reconciler.common.ownership import RESERVED_KEYS, RESERVED_PREFIX
from reconciler.specs import secrets
from reconciler.specs.messages import closest

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
    if PurePosixPath(value).is_absolute() or PureWindowsPath(value).anchor or value[0] == "~":
        raise _invalid(f"{_show(value)} is absolute; write it relative to this spec file")
    return value


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
