"""Validating a batch's input file, line by line, with the real API's error codes.

One pass, streaming: memory grows only with the set of custom_ids. The result also records
which requests the model will refuse (so request_counts can count failures while in progress).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconciler.sandbox import responder
from reconciler.sandbox.disk import BatchErrorItem, Validation
from reconciler.sandbox.responder import input_count

MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1024 * 1024
MAX_INPUTS_PER_REQUEST = 2_048  # embeddings: texts in one request's `input`
MAX_INPUTS = 50_000  # embeddings: texts across one batch
MAX_REPORTED = 1000  # errors kept per batch; a broken 50,000-line file need not list them all


def validate_input(path: Path | None, endpoint: str, input_file_id: str) -> Validation:
    if path is None:
        return _failed(f"Input file '{input_file_id}' was not found.", param="input_file_id")
    if path.stat().st_size > MAX_BYTES:
        return _failed(f"The input file is larger than the {MAX_BYTES} byte limit.")
    checker = _LineChecker(endpoint)
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if raw.strip() and not checker.check(number, raw):
                break
    return checker.result()


def _failed(message: str, *, param: str | None = None) -> Validation:
    return Validation(errors=(BatchErrorItem(code="invalid_request", message=message, param=param),))


class _LineChecker:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.first_line: dict[str, int] = {}  # custom_id -> line it first appeared on
        self.model: tuple[str, int] | None = None
        self.total = 0
        self.inputs = 0  # embedding inputs so far
        self.failing: list[int] = []
        self.errors: list[BatchErrorItem] = []

    def check(self, number: int, raw: bytes) -> bool:
        """Checks one line; False once there is no point reading further."""
        problem = self._problem(number, raw)
        if problem is not None:
            self.errors.append(problem)
        return len(self.errors) < MAX_REPORTED and self.total <= MAX_REQUESTS

    def result(self) -> Validation:
        if self.total > MAX_REQUESTS:
            message = f"The input file has more than the {MAX_REQUESTS} requests a batch may hold."
            return _failed(message)
        if not self.errors and self.total == 0:
            return _failed("The input file contains no requests.")
        return Validation(
            total=self.total,
            model=self.model[0] if self.model else None,
            failing=tuple(self.failing) if not self.errors else (),
            errors=tuple(self.errors),
        )

    def _problem(self, number: int, raw: bytes) -> BatchErrorItem | None:
        try:
            line: Any = json.loads(raw)
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting alike
            line = None
        if not isinstance(line, dict):
            return _error("invalid_json_line", "This line is not parseable as valid JSON.", number)
        for name, kind in (("custom_id", str), ("method", str), ("url", str), ("body", dict)):
            if not isinstance(line.get(name), kind):
                message = f"Missing required parameter: '{name}'."
                return _error("missing_required_parameter", message, number, name)
        body: dict[str, Any] = line["body"]
        problem = self._request_problem(number, line, body) or self._inputs_problem(number, body)
        if problem is None:
            self._accept(number, line["custom_id"], name=body["model"], body=body)
        return problem

    def _request_problem(
        self, number: int, line: dict[str, Any], body: dict[str, Any]
    ) -> BatchErrorItem | None:
        if line["method"] != "POST":
            return _error("invalid_request", "The method must be POST.", number, "method")
        if line["url"] != self.endpoint:
            message = f"The url '{line['url']}' does not match the batch endpoint '{self.endpoint}'."
            return _error("invalid_url", message, number, "url")
        if body.get("stream") is True:
            message = "Streaming is not supported in the Batch API."
            return _error("streaming_unsupported", message, number, "body.stream")
        name = body.get("model")
        if not isinstance(name, str):
            return _error("invalid_request", "The request body has no 'model'.", number, "body.model")
        if responder.family(name) is None:
            message = f"The model '{name}' does not exist or you do not have access to it."
            return _error("model_not_found", message, number, "body.model")
        if self.model is not None and self.model[0] != name:
            message = f"Every request must use one model: '{self.model[0]}' on line {self.model[1]}."
            return _error("invalid_request", message, number, "body.model")
        first = self.first_line.get(line["custom_id"])
        if first is not None:
            message = f"The custom_id is already used on line {first}; it must be unique."
            return _error("duplicate_custom_id", message, number, "custom_id")
        return None

    def _inputs_problem(self, number: int, body: dict[str, Any]) -> BatchErrorItem | None:
        if self.endpoint != "/v1/embeddings":
            return None
        count = input_count(body.get("input"))
        if count > MAX_INPUTS_PER_REQUEST:
            most = MAX_INPUTS_PER_REQUEST
            message = f"The request has {count} inputs; an embeddings request may have at most {most}."
            return _error("invalid_request", message, number, "body.input")
        before, self.inputs = self.inputs, self.inputs + count
        if before <= MAX_INPUTS < self.inputs:
            message = (
                f"This line takes the batch past {MAX_INPUTS} embedding inputs, the most a batch may hold."
            )
            return _error("invalid_request", message, number, "body.input")
        return None

    def _accept(self, number: int, custom_id: str, *, name: str, body: dict[str, Any]) -> None:
        self.first_line[custom_id] = number
        self.model = self.model or (name, number)
        if responder.refusal(self.endpoint, body) is not None:
            self.failing.append(self.total)
        self.total += 1


def _error(code: str, message: str, line: int, param: str | None = None) -> BatchErrorItem:
    return BatchErrorItem(code=code, message=message, param=param, line=line)
