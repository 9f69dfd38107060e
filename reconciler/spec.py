"""The documents a user writes, `BatchJob` and `Provider` (apiVersion reconciler/v1).

Every check that needs only the document itself lives here, as a validator whose message
is the text the user reads; checks that need the file system or other documents live in
loader.py. Models are strict: YAML's `yes` is not a string and `"true"` is not a boolean.
"""

from __future__ import annotations

import difflib
import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import ErrorDetails, PydanticCustomError

from reconciler import ownership, secrets

API_VERSION = "reconciler/v1"
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
SANDBOX = "sandbox"  # what an omitted `provider` means; no Provider may take the name
RESERVED_PREFIX = "reconciler_"
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError("reconciler", message)


def _show(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def closest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """`; did you mean 'x'?` when a choice is close, else ''."""
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


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


def _metadata_key(value: str) -> str:
    if not value or len(value) > ownership.MAX_METADATA_KEY_CHARS:
        raise _invalid(f"a metadata key has 1 to {ownership.MAX_METADATA_KEY_CHARS} characters")
    if value.startswith(RESERVED_PREFIX):
        raise _invalid(f"keys starting with '{RESERVED_PREFIX}' are reserved for the reconciler")
    return value


def _metadata_value(value: str) -> str:
    if len(value) > ownership.MAX_METADATA_VALUE_CHARS:
        limit = ownership.MAX_METADATA_VALUE_CHARS
        raise _invalid(f"{len(value)} characters; a metadata value has at most {limit}")
    return value


def _metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > ownership.MAX_USER_METADATA_PAIRS:
        raise _invalid(
            f"{len(value)} pairs; at most {ownership.MAX_USER_METADATA_PAIRS} "
            f"(the Batch API allows {ownership.MAX_METADATA_PAIRS}, the reconciler uses "
            f"{len(ownership.RESERVED_KEYS)})"
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


def _schema(**extra: Any) -> Any:
    return Field(json_schema_extra=extra)


Name = Annotated[str, AfterValidator(_name), _schema(pattern=NAME_PATTERN, maxLength=MAX_NAME_CHARS)]
MetadataKey = Annotated[
    str,
    AfterValidator(_metadata_key),
    _schema(maxLength=ownership.MAX_METADATA_KEY_CHARS, **{"not": {"pattern": f"^{RESERVED_PREFIX}"}}),
]
MetadataValue = Annotated[
    str, AfterValidator(_metadata_value), _schema(maxLength=ownership.MAX_METADATA_VALUE_CHARS)
]
HeaderName = Annotated[str, AfterValidator(_header_name)]
HeaderValue = Annotated[str, AfterValidator(_header_value)]


class _Document(BaseModel):
    # attribute docstrings become JSON Schema descriptions: editors show them on hover
    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, populate_by_name=True, use_attribute_docstrings=True
    )


class ObjectMeta(_Document):
    name: Name
    """Unique per kind in the repo: lowercase letters, digits and '-', at most 63 characters."""
    labels: dict[str, str] = {}
    """Free-form key: value pairs for selection and display."""


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
    if not 1 <= size <= MAX_INPUT_BYTES:
        raise _invalid(f"must be between 1 byte and {MAX_INPUT_BYTES:,} bytes (200 MB, the API's limit)")
    return size


MAX_INPUT_BYTES = 200 * 1024 * 1024
MAX_INPUT_REQUESTS = 50_000
RetryReason = Literal["batch_expired", "server_error", "rate_limited", "batch_failed"]
DEFAULT_RETRY_ON: list[RetryReason] = ["batch_expired", "server_error", "rate_limited"]


class SplitSpec(_Document):
    max_requests: Annotated[int, Field(ge=1, le=MAX_INPUT_REQUESTS)] = MAX_INPUT_REQUESTS
    """Requests per part at most; the API allows 50,000."""
    max_bytes: Annotated[int, BeforeValidator(_byte_size), _schema(type=["integer", "string"])] = (
        MAX_INPUT_BYTES
    )
    """Bytes per part at most, e.g. 200MB (the API's limit) or 50MiB."""


class RetrySpec(_Document):
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 1
    """Batches per request at most, the first included; 1 means no retry."""
    on: list[RetryReason] = DEFAULT_RETRY_ON
    """Which request outcomes are sent again."""


class CleanupSpec(_Document):
    input_files: bool = False
    """Delete uploaded inputs once their batch has finished."""
    output_files: bool = False
    """Delete output and error files once the merged results are written (needs results)."""


class BatchJobSpec(_Document):
    provider: Name | None = None
    """A Provider document's name; omitted: the built-in sandbox."""
    endpoint: Annotated[str, AfterValidator(_endpoint), _schema(enum=list(ALLOWED_ENDPOINTS))]
    """The Batch API endpoint every request line targets (each line's url must equal it)."""
    completion_window: Annotated[str, AfterValidator(_window), _schema(enum=list(COMPLETION_WINDOWS))] = "24h"
    """How long the provider may take; the Batch API only accepts 24h."""
    input: Annotated[str, AfterValidator(_input)]
    """The JSONL input, relative to this spec file; it must stay inside the repo."""
    metadata: Annotated[
        dict[MetadataKey, MetadataValue],
        AfterValidator(_metadata),
        _schema(maxProperties=ownership.MAX_USER_METADATA_PAIRS),
    ] = {}
    """Passed to the batch after the reconciler's own keys; keys may not start with reconciler_."""
    suspend: bool = False
    """true: create nothing, and cancel what runs."""
    deletion_policy: Literal["cancel", "orphan"] = "cancel"
    """What happens to a running batch when this spec goes away."""
    split: SplitSpec | None = None
    """Split an input over the API's limits into several batches (parts)."""
    retry: RetrySpec | None = None
    """Send again only the requests that did not succeed, up to max_attempts batches each."""
    results: Annotated[str, AfterValidator(_input)] | None = None
    """Where to write the merged results (JSONL), relative to this spec file, inside the repo."""
    cleanup: CleanupSpec | None = None
    """Delete files the reconciler uploaded or whose contents it has merged."""


class BatchJob(_Document):
    """An LLM batch job: one JSONL input sent to the Batch API, kept in sync with git."""

    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["BatchJob"]
    metadata: ObjectMeta
    spec: BatchJobSpec

    @property
    def name(self) -> str:
        return self.metadata.name


class ProviderSpec(_Document):
    base_url: Annotated[str, AfterValidator(_base_url), _schema(format="uri")]
    """The OpenAI-compatible API's base URL, e.g. https://api.openai.com/v1; no credentials in it."""
    headers: Annotated[dict[HeaderName, HeaderValue], AfterValidator(_headers)] = {}
    """Sent with every request; write secrets as ${VAR}, read from the environment at run time."""


class Provider(_Document):
    """Where batches are sent: an OpenAI-compatible Batch API, direct or through a gateway."""

    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["Provider"]
    metadata: ObjectMeta
    spec: ProviderSpec

    @property
    def name(self) -> str:
        return self.metadata.name


KINDS: dict[str, type[BatchJob] | type[Provider]] = {"BatchJob": BatchJob, "Provider": Provider}


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
