"""`${VAR}` in provider headers: syntax rules, and expansion that never leaks a value."""

from __future__ import annotations

import pytest

from reconciler.common.errors import MissingVariableError, UserError
from reconciler.specs.secrets import expand_headers, syntax_problem, variables_in


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("Bearer ${OPENAI_API_KEY}", ["OPENAI_API_KEY"]),
        ("${A}${_b1}${A}", ["A", "_b1"]),
        ("$${NOT_A_VARIABLE}", []),
        ("price: 5$ or $", []),
        ("plain", []),
    ],
)
def test_variables_are_the_braced_names(value: str, names: list[str]) -> None:
    assert syntax_problem(value) is None
    assert variables_in(value) == names


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("Bearer ${KEY", "unclosed"),
        ("token-${}-end", "empty"),
        ("${9LIVES}", "must not start with a digit"),
        ("${A-B}", "letters, digits and '_'"),
        ("${A:-default}", "letters, digits and '_'"),
        ("Bearer $OPENAI_API_KEY", "${NAME}"),
    ],
)
def test_malformed_references_are_named_without_the_value(value: str, fragment: str) -> None:
    problem = syntax_problem(value)
    assert problem is not None and fragment in problem
    assert value not in problem


def test_expansion_replaces_references_and_unescapes_dollars() -> None:
    headers = {"Authorization": "Bearer ${KEY}", "x-note": "$${KEY} costs 5$", "x-plain": "openai"}
    expanded = expand_headers("portkey", headers, {"KEY": "sk-123"})
    assert expanded == {"Authorization": "Bearer sk-123", "x-note": "${KEY} costs 5$", "x-plain": "openai"}


def test_a_missing_variable_names_provider_header_and_variable() -> None:
    with pytest.raises(MissingVariableError) as caught:
        expand_headers("portkey", {"x-portkey-api-key": "${PORTKEY_API_KEY}"}, {})
    assert str(caught.value) == (
        "provider 'portkey': header x-portkey-api-key needs ${PORTKEY_API_KEY}, which is not set"
    )


def test_every_missing_variable_is_listed_and_no_value_is_shown() -> None:
    headers = {"Authorization": "Bearer ${OPENAI_API_KEY}", "x-a": "${A}", "x-b": "${B}"}
    with pytest.raises(MissingVariableError) as caught:
        expand_headers("openai", headers, {"A": "visible-secret", "B": ""})
    message = str(caught.value)
    assert "${OPENAI_API_KEY}, which is not set" in message
    assert "${B}, which is empty" in message
    assert "${A}" not in message and "visible-secret" not in message


def test_a_variable_holding_a_line_break_is_refused_without_showing_it() -> None:
    with pytest.raises(UserError) as caught:
        expand_headers("p", {"x-key": "${K}"}, {"K": "abc\r\nInjected: yes"})
    assert "line break" in str(caught.value) and "Injected" not in str(caught.value)
