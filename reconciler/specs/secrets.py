"""`${VAR}` references in provider header values, and their expansion from the environment.

The rules, the same for `validate` and at run time:

- `${NAME}` is replaced by the environment variable NAME (letters, digits, `_`; not
  starting with a digit). No defaults, no nesting.
- `$$` is a literal `$`, so `$${X}` sends the text `${X}`.
- `$NAME` without braces is an error: it looks like a reference, and sending it as-is would
  only show up as a 401 an hour later.
- Any other `$` (last character, before a space, a digit, punctuation) is a literal `$`.

A variable that is unset *or empty* is an error: CI systems expand a missing secret to "".
Messages name headers and variables, never a header's value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from reconciler.common.errors import MissingVariableError, UserError

_DOLLAR = re.compile(r"\$(?:(?P<escape>\$)|\{(?P<name>[^}]*)(?P<close>\})?|(?P<bare>[A-Za-z_]))?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class _Piece:
    text: str = ""
    variable: str | None = None
    problem: str | None = None


def _pieces(value: str) -> Iterator[_Piece]:
    position = 0
    for match in _DOLLAR.finditer(value):
        yield _Piece(text=value[position : match.start()])
        position = match.end()
        yield _reference(match)
    yield _Piece(text=value[position:])


def _reference(match: re.Match[str]) -> _Piece:
    name = match.group("name")
    if match.group("bare"):
        return _Piece(problem="'$' followed by a name: write ${NAME} for a variable, $$ for '$'")
    if name is None:
        return _Piece(text="$")  # `$$`, or a lone `$`
    if match.group("close") is None:
        return _Piece(problem="unclosed '${': add the closing '}'")
    if not name:
        return _Piece(problem="empty '${}': put a variable name between the braces")
    if not _NAME.fullmatch(name):
        return _Piece(
            problem="a name in '${...}' may only hold letters, digits and '_', "
            "and must not start with a digit"
        )
    return _Piece(variable=name)


def variables_in(value: str) -> list[str]:
    """Names referenced as `${NAME}`, in order, without duplicates."""
    names = [piece.variable for piece in _pieces(value) if piece.variable]
    return list(dict.fromkeys(names))


def syntax_problem(value: str) -> str | None:
    """What is wrong with the `$` syntax of a header value; None when it is well-formed."""
    return next((piece.problem for piece in _pieces(value) if piece.problem), None)


def expand_headers(provider_name: str, headers: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """Headers with every `${NAME}` replaced from `env`; all missing variables in one error."""
    expanded: dict[str, str] = {}
    missing: list[str] = []
    for header, value in headers.items():
        where = f"provider '{provider_name}': header {header}"
        problem = syntax_problem(value)
        if problem:
            raise UserError(f"{where}: {problem}")
        for name in variables_in(value):
            if not env.get(name):
                state = "not set" if env.get(name) is None else "empty"
                missing.append(f"{where} needs ${{{name}}}, which is {state}")
            elif not sendable(env[name]):
                raise UserError(f"{where}: ${{{name}}} contains a line break, control or non-ASCII character")
        expanded[header] = "".join(_expand(value, env))
    if missing:
        raise MissingVariableError("; ".join(missing))
    return expanded


def sendable(value: str) -> bool:
    """What an HTTP header value can carry as is: printable ASCII and tabs, on one line."""
    return all(char == "\t" or " " <= char <= "~" for char in value)


def _expand(value: str, env: Mapping[str, str]) -> Iterator[str]:
    for piece in _pieces(value):
        yield env.get(piece.variable, "") if piece.variable else piece.text


def expand(value: str, env: Mapping[str, str]) -> str:
    """`value` with every `${NAME}` replaced from `env` (callers check for missing names first)."""
    return "".join(_expand(value, env))
