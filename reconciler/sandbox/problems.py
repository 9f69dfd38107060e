"""HTTP error answers in the API's shape: `{"error": {"message", "type", "param", "code"}}`.

This is the server's own control flow (a request handler stops and answers with an error),
not an error of the reconciler, so it lives here rather than in reconciler/errors.py.
"""

from __future__ import annotations

from typing import Any


class ApiProblem(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiProblem:
    return ApiProblem(400, message, param=param, code=code)


def missing(param: str) -> ApiProblem:
    return bad_request(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def invalid_value(param: str, message: str) -> ApiProblem:
    return bad_request(message, param=param, code="invalid_value")


def not_found(message: str, *, param: str | None = None) -> ApiProblem:
    return ApiProblem(404, message, param=param)


def unknown_route(method: str, path: str) -> ApiProblem:
    return ApiProblem(404, f"Invalid URL ({method} {path})")
