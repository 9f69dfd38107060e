"""Fuzzing the loader: whatever the YAML, it either loads or reports SpecError, never crashes."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.common.errors import SpecError
from reconciler.specs.loader import LoadedRepo, load_repo
from reconciler.specs.repo import RepoPaths, resolve_paths

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
VALID_JOB: dict[str, Any] = {
    "apiVersion": "reconciler/v1",
    "kind": "BatchJob",
    "metadata": {"name": "nightly-eval", "labels": {"team": "evals"}},
    "spec": {"endpoint": "/v1/chat/completions", "input": "../data/in.jsonl", "metadata": {"a": "b"}},
}
YAML_ALPHABET = st.sampled_from(
    [*"{}[]:-,&*!|>'\"#%@`?\\ \n\t\r$~.01aZ_é", "---\n", "...\n", "<<: ", "!!python/tuple ", "&a ", "*a "]
)


@pytest.fixture(scope="module")
def paths() -> Iterator[RepoPaths]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "specs").mkdir()
        (root / "data").mkdir()
        (root / "data" / "in.jsonl").write_text("{}\n")
        yield resolve_paths(folder, None, None)


def load_text(paths: RepoPaths, text: str | bytes) -> LoadedRepo | SpecError:
    spec = paths.specs / "fuzz.yaml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        return load_repo(paths)
    except SpecError as error:
        lines = len(spec.read_bytes().splitlines()) + 1
        for problem in error.problems:
            assert problem.path == "specs/fuzz.yaml"
            assert problem.line is None or 1 <= problem.line <= lines, problem
        return error


@FUZZ
@given(st.text())
def test_any_text_loads_or_is_reported(paths: RepoPaths, text: str) -> None:
    load_text(paths, text)


@FUZZ
@given(st.binary())
def test_any_bytes_load_or_are_reported(paths: RepoPaths, data: bytes) -> None:
    load_text(paths, data)


@FUZZ
@given(st.lists(YAML_ALPHABET, max_size=60).map("".join))
def test_yaml_punctuation_soup_loads_or_is_reported(paths: RepoPaths, text: str) -> None:
    load_text(paths, text)


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=80)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=4)
    ),
    max_leaves=12,
)
PATHS = st.sampled_from(
    [(), ("metadata",), ("spec",), ("metadata", "labels"), ("spec", "metadata"), ("spec", "input")]
)
FIELDS = st.sampled_from(
    [
        "apiVersion",
        "kind",
        "name",
        "labels",
        "endpoint",
        "input",
        "provider",
        "suspend",
        "x",
        "metadata",
        "spec",
        "completion_window",
        "deletion_policy",
    ]
)


@pytest.mark.slow
@FUZZ
@given(st.lists(st.tuples(PATHS, FIELDS, VALUES), max_size=4), st.booleans())
def test_mutated_documents_load_or_are_reported(
    paths: RepoPaths, mutations: list[tuple[tuple[str, ...], str, Any]], flow_style: bool
) -> None:
    document = yaml.safe_load(yaml.safe_dump(VALID_JOB))
    for path, field, value in mutations:
        target = document
        for step in path:
            target = target.get(step) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target[field] = value
    outcome = load_text(paths, yaml.safe_dump(document, default_flow_style=flow_style))
    if not mutations:
        assert isinstance(outcome, LoadedRepo) and list(outcome.jobs) == ["nightly-eval"]


@pytest.mark.slow
def test_deep_nesting_is_reported_not_a_crash(paths: RepoPaths) -> None:
    outcome = load_text(paths, "a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert isinstance(outcome, SpecError)


def test_self_referencing_aliases_are_reported_not_a_crash(paths: RepoPaths) -> None:
    outcome = load_text(
        paths, "&doc\napiVersion: reconciler/v1\nkind: BatchJob\nmetadata: *doc\nspec: *doc\n"
    )
    assert isinstance(outcome, SpecError)


def test_an_alias_bomb_is_reported_quickly(paths: RepoPaths) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    outcome = load_text(paths, bomb)
    assert isinstance(outcome, SpecError)
