"""Every error the reconciler raises on purpose, in one tree.

    ReconcilerError                  base; `lines()` is what the user sees, `exit_code` what the shell sees
    ├── UserError                    something the user can fix: bad flag, bad file, missing variable
    │   ├── SpecError                one or more problems in specs / inputs, each `path:line: field: message`
    │   ├── MissingVariableError     `${VAR}` in a provider header is not set
    │   ├── OwnerError               no owner id could be determined
    │   ├── PlanRefusedError         a plan we will not carry out (empty desired set, stale saved plan)
    │   └── InputChangedError        an input file changed while it was being uploaded
    ├── WriteError                   a file we must write cannot be (disk full, read-only folder)
    ├── StateError                   the state file is damaged, from the future, or belongs to another owner
    │   └── LockHeldError            another process holds the state lock
    └── ApiError                     the Batch/Files API could not do what we asked
        ├── ResultsGoneError         the output or error files results are built from are gone
        ├── ApiConnectionError       no usable response (connect failure, timeout, garbage body)
        ├── ApiStatusError           an error status from the server (`status`, `code`, `retry_after`,
        │                            `should_retry`: its x-should-retry)
        └── OutcomeUnknownError      a create may or may not have happened; resolved from the live list

Anything else escaping to the CLI is a bug and is shown as one.  Messages never contain
credentials: API errors carry the server's message and our URL path, never request headers.
"""

from __future__ import annotations

from dataclasses import dataclass


class ReconcilerError(Exception):
    exit_code = 1

    def lines(self) -> list[str]:
        return [str(self)]


class UserError(ReconcilerError):
    pass


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a user's file; `line` is 1-based, None where no line applies."""

    path: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


@dataclass(frozen=True)
class ReadProblem(Problem):
    """A spec file or folder that could not be read (no permission, no descriptor left, not a
    file): the machine's trouble rather than the text's, so worth reading again later."""


class SpecError(UserError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class MissingVariableError(UserError):
    pass


class OwnerError(UserError):
    pass


class PlanRefusedError(UserError):
    pass


class WriteError(ReconcilerError):
    @classmethod
    def of(cls, path: object, error: OSError) -> WriteError:
        return cls(f"cannot write {path}: {error.strerror or error}; nothing was changed there")


class InputChangedError(UserError):
    pass


class StateError(ReconcilerError):
    pass


class LockHeldError(StateError):
    pass


class ApiError(ReconcilerError):
    pass


class ApiConnectionError(ApiError):
    pass


class ApiStatusError(ApiError):
    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.should_retry = should_retry


class OutcomeUnknownError(ApiError):
    def __init__(self, message: str, *, in_flight: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        # No answer at all (a timeout, a hang-up): the server may still be acting on it.  An
        # error answer means it is done, whatever it did.
        self.in_flight = in_flight
        self.status = status  # the error answer's HTTP status; None without an answer


class ResultsGoneError(ApiError):
    """Deleted by cleanup or expired at the provider, and not kept in the work folder either."""
