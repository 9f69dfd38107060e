"""The rules for one request line of a batch input, and what the file-level rules remember."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from reconciler.common.errors import Problem
from reconciler.common.limits import MAX_EMBEDDING_INPUTS_PER_REQUEST, InputLimits
from reconciler.specs.inputs.embeddings import EMBEDDINGS, inputs_of
from reconciler.specs.inputs.tokens import UNBOUNDED, request_tokens

MAX_LISTED = 20  # problems shown per file; a broken 50,000-line file is not 50,000 lines of output


class RequestChecker:
    """The rules for one line, and what the file-level rules need to remember."""

    def __init__(self, endpoint: str, display: str, limits: InputLimits) -> None:
        self.endpoint = endpoint
        self.display = display
        self.limits = limits
        self.requests = 0
        self.model: str | None = None
        self.model_line = 0
        self.first_line_of: dict[str, int] = {}
        self.blank_line: int | None = None  # a blank line is fine only at the end
        self.listed: list[Problem] = []
        self.unlisted = 0
        self.input_tokens = 0  # estimated, over every request (see tokens.py)
        self.output_tokens = 0  # the requests' own output limits, added up
        self.unbounded = 0  # requests that set no output limit
        self.fingerprints: dict[str, bytes] = {}  # custom_id → its line's (index.py)
        self.inputs = 0  # embedding inputs, over every request of an embeddings job
        self.inputs_passed_at: int | None = None  # the line that took them past the limit

    @property
    def failed(self) -> bool:
        return bool(self.listed)

    def report(self, line: int | None, field: str, message: str) -> None:
        if len(self.listed) < MAX_LISTED:
            self.listed.append(Problem(self.display, line, field, message))
        else:
            self.unlisted += 1

    def problems(self) -> list[Problem]:
        more = [Problem(self.display, None, "", f"… and {self.unlisted} more problems")]
        return self.listed + (more if self.unlisted else [])

    def check(self, number: int, line: bytes) -> None:
        if not line or line.isspace():
            self.blank_line = self.blank_line or number
            return
        if self.blank_line:
            self.report(self.blank_line, "", "blank line; every line must be one JSON request")
            self.blank_line = None
        self.requests += 1
        if self.requests > self.limits.max_requests:
            return  # already an error; just count, without growing memory
        try:
            request = _decode(line)
        except UnicodeDecodeError:
            self.report(number, "", "not UTF-8 text; save the file as UTF-8")
            return
        except ValueError as error:
            self.report(number, "", f"not valid JSON: {getattr(error, 'msg', error)}")
            return
        if type(request) is not dict:
            self.report(number, "", "must be a JSON object: {custom_id, method, url, body}")
            return
        custom_id = request.get("custom_id")
        self._check_custom_id(number, custom_id)
        if type(custom_id) is str:
            self.fingerprints[custom_id] = hashlib.blake2b(line, digest_size=8).digest()
        self._check_method_and_url(number, request)
        self._check_body(number, request.get("body"))

    def _check_custom_id(self, number: int, custom_id: object) -> None:
        if custom_id is None:
            self.report(number, "custom_id", "required")
        elif type(custom_id) is not str or not custom_id:
            self.report(number, "custom_id", "must be a non-empty string")
        else:
            first = self.first_line_of.setdefault(custom_id, number)
            if first != number:
                shown = repr(custom_id[:60])
                self.report(number, "custom_id", f"duplicate {shown} (first on line {first})")

    def _check_method_and_url(self, number: int, request: dict[str, Any]) -> None:
        method, url = request.get("method"), request.get("url")
        if method != "POST":
            self.report(number, "method", "required" if method is None else "must be 'POST'")
        if url != self.endpoint:
            message = f"must be the job's endpoint {self.endpoint}"
            self.report(number, "url", "required" if url is None else message)

    def _check_body(self, number: int, body: object) -> None:
        if type(body) is not dict:
            self.report(number, "body", "required" if body is None else "must be a JSON object")
            return
        model = body.get("model")
        if type(model) is not str or not model:
            message = "required" if model is None else "must be a non-empty string"
            self.report(number, "body.model", message)
        elif self.model is None:
            self.model, self.model_line = model, number
        elif model != self.model:
            message = (
                f"{model[:60]!r}, but line {self.model_line} has {self.model[:60]!r}; one model per file"
            )
            self.report(number, "body.model", message)
        if body.get("stream") is True:
            self.report(number, "body.stream", "streaming is not supported in a batch; remove it")
        if self.endpoint == EMBEDDINGS:
            self._count_inputs(number, body.get("input"))
        read, limit = request_tokens(self.endpoint, body)
        self.input_tokens += read
        if limit == UNBOUNDED:
            self.unbounded += 1
        else:
            self.output_tokens += limit

    def _count_inputs(self, number: int, value: object) -> None:
        count = inputs_of(value)
        if count > MAX_EMBEDDING_INPUTS_PER_REQUEST:
            message = (
                f"{count:,} inputs; an embeddings request may have at most "
                f"{MAX_EMBEDDING_INPUTS_PER_REQUEST:,}: spread them over more lines"
            )
            self.report(number, "body.input", message)
        self.inputs += count
        if self.inputs_passed_at is None and self.inputs > self.limits.max_inputs:
            self.inputs_passed_at = number


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Built once: json.loads with a keyword argument builds a decoder per call, ~20% of the parse.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _decode(line: bytes) -> Any:
    """json.loads(line) without NaN and Infinity, keeping its check for a byte order mark."""
    text = line.decode("utf-8")
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)
