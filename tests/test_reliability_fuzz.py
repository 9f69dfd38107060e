"""Bad-input fuzzing through the command line: never a traceback, whatever comes in.

tests/test_spec_fuzz.py and tests/test_inputs_fuzz.py fuzz the loader and the digest as
modules; this file drives `reconciler` commands end to end with what they did not cover:
Provider documents and the environment their `${VAR}`s read, spec fields for split, retry,
results and cleanup, JSONL inputs under split, saved plans, state files, and the Batch
objects a provider answers with (over real HTTP, from tests/hostile_server.py).  Every run
must exit 0 or 1, and on 1 print only `error: ` lines.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler.cli.main import main
from reconciler.sandbox import SandboxConfig, start_sandbox
from reconciler.specs.identity import owner_tag
from tests.hostile_server import HostileServer, hostile_server

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
OWNER = "tests/fuzz"
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
)
DOLLAR_SOUP = st.lists(st.sampled_from(["$", "{", "}", "$$", "${KEY}", "${", "A", " ", "é", "\t", "${1X}"]))


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Path, HostileServer, str]]:
    """One repo folder, one hostile server and one sandbox for every example of the module."""
    with tempfile.TemporaryDirectory() as folder, hostile_server() as hostile:
        sandbox = start_sandbox(Path(folder) / "sandbox", SandboxConfig(validation_seconds=600))
        try:
            yield Path(folder), hostile, sandbox.base_url
        finally:
            sandbox.stop()


def fresh_repo(world: tuple[Path, HostileServer, str]) -> Path:
    root = Path(tempfile.mkdtemp(dir=world[0]))
    (root / "specs").mkdir()
    (root / "data").mkdir()
    (root / "data" / "in.jsonl").write_text(lines_of(3))
    return root


def lines_of(count: int) -> str:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    return "".join(
        json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})
        + "\n"
        for i in range(count)
    )


def cli(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`reconciler ARGS --repo ROOT` in this process; an exception other than exit is a crash."""
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    os.environ.update({"RECONCILER_OWNER": OWNER, **(env or {})})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main([*args, "--repo", str(root)])
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert code in (0, 1), (code, err.getvalue())
    if code == 1:
        lines = err.getvalue().strip().split("\n")
        # A malformed foreign batch is skipped with a warning line (issue 15, item 10).
        errors = [line for line in lines if not line.startswith("warning: ")]
        assert errors and all(line.startswith("error: ") for line in errors), err.getvalue()
    return code, out.getvalue(), err.getvalue()


def job(**spec: Any) -> dict[str, Any]:
    base = {"endpoint": "/v1/chat/completions", "input": "../data/in.jsonl"}
    return {
        "apiVersion": "reconciler/v1",
        "kind": "BatchJob",
        "metadata": {"name": "fuzz"},
        "spec": base | spec,
    }


def provider(base_url: Any, headers: Any) -> dict[str, Any]:
    spec = {"base_url": base_url, "headers": headers}
    return {"apiVersion": "reconciler/v1", "kind": "Provider", "metadata": {"name": "p"}, "spec": spec}


def write(root: Path, *documents: Any) -> None:
    (root / "specs" / "fuzz.yaml").write_text(yaml.safe_dump_all(documents), encoding="utf-8")


@pytest.mark.slow
@FUZZ
@given(
    st.text(max_size=60) | st.sampled_from(["http://127.0.0.1:9/v1", "https://u:p@h/v1", "ftp://x", ""]),
    st.dictionaries(st.text(max_size=20), DOLLAR_SOUP.map("".join) | VALUES, max_size=3),
)
def test_any_provider_document_validates_or_is_reported(
    world: tuple[Path, HostileServer, str], base_url: str, headers: dict[str, Any]
) -> None:
    root = fresh_repo(world)
    write(root, provider(base_url, headers), job(provider="p"))
    cli(root, "validate")


@pytest.mark.slow
@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["Authorization", "x-portkey-api-key", "x-custom", "Host", "Content-Length"]),
        DOLLAR_SOUP.map("".join),
        max_size=3,
    ),
    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=30),
)
@example(headers={"x-custom": "${KEY}"}, value="é")  # found by this test: httpx could not encode it
@example(headers={"x-custom": "é"}, value="")
def test_any_header_and_environment_value_plans_or_is_reported(
    world: tuple[Path, HostileServer, str], headers: dict[str, Any], value: str
) -> None:
    """The provider answers nothing useful: what matters is that sending never crashes."""
    root = fresh_repo(world)
    write(root, provider(world[1].base_url("missing-fields"), headers), job(provider="p"))
    cli(root, "plan", env={"KEY": value})


SPEC_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "split": VALUES | st.fixed_dictionaries({}, optional={"max_requests": VALUES, "max_bytes": VALUES}),
        "retry": VALUES | st.fixed_dictionaries({}, optional={"max_attempts": VALUES, "on": VALUES}),
        "results": VALUES | st.sampled_from(["../out.jsonl", "../specs/x.jsonl", "../data/in.jsonl", "/abs"]),
        "cleanup": VALUES
        | st.fixed_dictionaries({}, optional={"input_files": VALUES, "output_files": VALUES}),
        "metadata": VALUES,
        "suspend": VALUES,
    },
)


@pytest.mark.slow
@FUZZ
@given(SPEC_FIELDS)
@example(fields={"split": {"\n": None}})  # found by this test: the key broke the one-line message
def test_any_split_retry_results_and_cleanup_fields_plan_or_are_reported(
    world: tuple[Path, HostileServer, str], fields: dict[str, Any]
) -> None:
    root = fresh_repo(world)
    write(root, job(**fields))
    if cli(root, "validate")[0] == 0:
        cli(root, "plan", env={"RECONCILER_SANDBOX_URL": world[2]})


LINE = st.one_of(
    st.just(lines_of(1).strip()),
    st.text(max_size=40),
    VALUES.map(json.dumps),
    st.builds(
        lambda cid, url, body: json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": body}),
        VALUES,
        st.sampled_from(["/v1/chat/completions", "/v1/embeddings", ""]),
        VALUES,
    ),
)


@FUZZ
@given(st.lists(LINE, max_size=12), st.integers(1, 4))
def test_any_jsonl_input_split_into_parts_plans_or_is_reported(
    world: tuple[Path, HostileServer, str], lines: list[str], per_part: int
) -> None:
    root = fresh_repo(world)
    (root / "data" / "in.jsonl").write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    write(root, job(split={"max_requests": per_part}))
    if cli(root, "validate")[0] == 0:
        cli(root, "plan", env={"RECONCILER_SANDBOX_URL": world[2]})


@FUZZ
@given(
    st.fixed_dictionaries(
        {
            "format_version": st.just(1) | VALUES,
            "changes": st.lists(
                VALUES
                | st.dictionaries(
                    st.sampled_from(["job", "action", "generation", "cancel", "adopt"]), VALUES
                ),
                max_size=3,
            )
            | VALUES,
        },
        optional={"owner": st.just(owner_tag(OWNER)) | VALUES, "lineage": VALUES},
    )
)
@example(document={"format_version": 1, "changes": [{"job": ["x"]}]})  # found by this test: TypeError
@example(document={"format_version": 1, "changes": [None]})
def test_any_saved_plan_is_applied_or_refused_in_one_line(
    world: tuple[Path, HostileServer, str], document: dict[str, Any]
) -> None:
    root = fresh_repo(world)
    write(root, job(suspend=True))  # whatever the plan says, nothing is created
    (root / "plan.json").write_text(json.dumps(document))
    cli(root, "apply", str(root / "plan.json"), env={"RECONCILER_SANDBOX_URL": world[2]})


@FUZZ
@given(
    st.fixed_dictionaries(
        {
            "format_version": st.just(1) | VALUES,
            "serial": st.just(1) | VALUES,
            "lineage": st.just("l") | VALUES,
        },
        optional={"jobs": VALUES, "owner": VALUES},
    )
    | VALUES
)
@example(
    document={"format_version": 1, "serial": 1, "lineage": "l", "jobs": {"\n": None}}
)  # found: a two-line error
def test_any_state_document_is_shown_or_reported(
    world: tuple[Path, HostileServer, str], document: dict[str, Any]
) -> None:
    root = fresh_repo(world)
    state = root / ".reconciler" / "state.json"
    state.parent.mkdir()
    state.write_text(json.dumps(document))
    cli(root, "status")
    cli(root, "status", "--json")


OWNED = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=12) | VALUES},
    optional={
        "status": st.sampled_from(["completed", "failed", "expired", "in_progress", "weird"]) | VALUES,
        "request_counts": VALUES,
        "output_file_id": VALUES,
        "errors": VALUES,
        "created_at": VALUES,
        "metadata": st.fixed_dictionaries(
            {"reconciler_owner": st.just(owner_tag(OWNER)), "reconciler_job": st.just("fuzz") | VALUES},
            optional={"reconciler_generation": VALUES, "reconciler_part": VALUES, "reconciler_retry": VALUES},
        )
        | VALUES,
    },
)


@pytest.mark.slow
@FUZZ
@given(st.lists(OWNED, max_size=4) | VALUES, st.booleans())
def test_any_batch_list_a_provider_answers_with_is_planned_or_reported(
    world: tuple[Path, HostileServer, str], data: Any, has_more: bool
) -> None:
    root = fresh_repo(world)
    hostile = world[1]
    hostile.script("/batches", {"object": "list", "data": data, "has_more": has_more})
    hostile.script("/files", {"object": "list", "data": [], "has_more": False})
    write(root, provider(hostile.base_url("scripted"), {}), job(provider="p", retry={"max_attempts": 2}))
    cli(root, "plan")
    cli(root, "reconcile")
