"""`reconciler validate` on bad JSONL inputs: exit 1, `data/file:line: field: message`, nothing written."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.repo import CliResult, MakeRepo, RunCli, UserRepo, request_lines

RunCli = RunCli
INPUT = "data/job.jsonl"


def good(n: int = 3) -> list[dict[str, Any]]:
    return request_lines(n)


def changed(line: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A copy of a request line with fields replaced (None removes the field)."""
    copy: dict[str, Any] = json.loads(json.dumps(line))
    for name, value in fields.items():
        target, key = (copy["body"], name[5:]) if name.startswith("body_") else (copy, name)
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return copy


def validate_lines(repo: UserRepo, run_cli: RunCli, lines: list[Any]) -> CliResult:
    repo.write_input(INPUT, lines=lines)
    repo.write_job("job", input=INPUT)
    return run_cli("validate", *repo.args())


def assert_rejected(result: CliResult, repo: UserRepo, where: str, fragment: str = "") -> None:
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    hits = [line for line in result.stderr.splitlines() if line.startswith(f"error: {where}")]
    assert any(fragment in line for line in hits), result.stderr
    assert repo.written() == []  # no cache, no state, no .reconciler/


@pytest.fixture
def repo(make_repo: MakeRepo) -> UserRepo:
    return make_repo()


first, second, third = good()
BAD_LINES = [
    ("not-json", [first, "{not json", third], f"{INPUT}:2:", "not valid JSON"),
    ("nan-is-not-json", [first, json.dumps(second).replace('"max_tokens": 64', '"max_tokens": NaN')], f"{INPUT}:2:", "NaN"),
    ("not-an-object", [first, "[1, 2]"], f"{INPUT}:2:", "JSON object"),
    ("missing-custom-id", [first, changed(second, custom_id=None)], f"{INPUT}:2: custom_id:", "required"),
    ("numeric-custom-id", [changed(first, custom_id=7)], f"{INPUT}:1: custom_id:", "string"),
    ("duplicate-custom-id", [first, second, changed(third, custom_id=first["custom_id"])], f"{INPUT}:3: custom_id:", "first on line 1"),
    ("get-method", [first, changed(second, method="GET")], f"{INPUT}:2: method:", "POST"),
    ("missing-method", [changed(first, method=None)], f"{INPUT}:1: method:", "required"),
    ("other-url", [first, second, changed(third, url="/v1/embeddings")], f"{INPUT}:3: url:", "/v1/chat/completions"),
    ("missing-body", [changed(first, body=None)], f"{INPUT}:1: body:", "required"),
    ("body-not-object", [changed(first, body="hello")], f"{INPUT}:1: body:", "JSON object"),
    ("missing-model", [first, changed(second, body_model=None)], f"{INPUT}:2: body.model:", "required"),
    ("streaming", [first, changed(second, body_stream=True)], f"{INPUT}:2: body.stream:", "streaming"),
    ("two-models", [first, second, changed(third, body_model="gpt-4o")], f"{INPUT}:3: body.model:", "line 1 has 'gpt-4o-mini'"),
    ("blank-line-inside", [first, "", second], f"{INPUT}:2:", "blank line"),
    ("empty-file", [], f"{INPUT}:", "empty"),
    ("only-blank-lines", ["", "  "], f"{INPUT}:", "empty"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("lines", "where", "fragment"), [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES]
)
def test_a_bad_request_line_is_reported_at_its_line(
    repo: UserRepo, run_cli: RunCli, lines: list[Any], where: str, fragment: str
) -> None:
    assert_rejected(validate_lines(repo, run_cli, lines), repo, where, fragment)


def test_a_line_that_is_not_utf8_is_reported(repo: UserRepo, run_cli: RunCli) -> None:
    body = b"".join(json.dumps(line).encode() + b"\n" for line in good(2))
    (repo.data / "job.jsonl").write_bytes(body + b'{"custom_id": "caf\xe9"}\n')
    repo.write_job("job", input=INPUT)
    assert_rejected(run_cli("validate", *repo.args()), repo, f"{INPUT}:3:", "UTF-8")


def test_streaming_false_and_trailing_blank_lines_are_fine(repo: UserRepo, run_cli: RunCli) -> None:
    result = validate_lines(repo, run_cli, [changed(first, body_stream=False), second, "", " "])
    assert (result.exit_code, result.stdout) == (0, "1 job, 0 providers: valid\n"), result.stderr


def test_crlf_line_endings_are_accepted(repo: UserRepo, run_cli: RunCli) -> None:
    (repo.data / "job.jsonl").write_bytes(b"".join(json.dumps(line).encode() + b"\r\n" for line in good(3)))
    repo.write_job("job", input=INPUT)
    assert run_cli("validate", *repo.args()).exit_code == 0


@pytest.mark.slow
def test_more_than_50000_requests_without_split_is_an_error_that_suggests_split(
    repo: UserRepo, run_cli: RunCli
) -> None:
    line = json.dumps(first)
    (repo.data / "job.jsonl").write_text(
        "".join(line.replace("req-00001", f"r{i}") + "\n" for i in range(50_001)), encoding="utf-8"
    )
    repo.write_job("job", input=INPUT)
    assert_rejected(
        run_cli("validate", *repo.args()), repo, f"{INPUT}:", "50001 requests; a batch may have at most 50000"
    )
    assert "add `split:` to the spec" in run_cli("validate", *repo.args()).stderr


def test_more_than_200_mib_is_an_error_without_reading_the_file(repo: UserRepo, run_cli: RunCli) -> None:
    path = repo.write_input(INPUT, 1)
    with path.open("r+b") as stream:  # sparse: 200 MiB on paper, nothing on disk
        stream.truncate(200 * 1024 * 1024 + 1)
    repo.write_job("job", input=INPUT)
    assert_rejected(run_cli("validate", *repo.args()), repo, f"{INPUT}:", "at most 200 MiB")


def test_problems_are_capped_per_file_with_a_count_of_the_rest(repo: UserRepo, run_cli: RunCli) -> None:
    result = validate_lines(repo, run_cli, ["{bad"] * 25)
    problems = [line for line in result.stderr.splitlines() if line.startswith(f"error: {INPUT}")]
    assert len(problems) == 21
    assert problems[-1] == f"error: {INPUT}: … and 5 more problems"


def test_problems_in_several_inputs_and_specs_come_in_one_report(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_input("data/a.jsonl", lines=[first, "{"])
    repo.write_input("data/b.jsonl", lines=[changed(first, method="PUT")])
    repo.write_job("a", input="data/a.jsonl")
    repo.write_job("b", input="data/b.jsonl")
    repo.write_job("c", endpoint="/v1/nope")
    result = run_cli("validate", *repo.args())
    assert result.exit_code == 1
    for where in ("data/a.jsonl:2:", "data/b.jsonl:1: method:", "specs/c.yaml:6: spec.endpoint:"):
        assert f"error: {where}" in result.stderr
    assert repo.written() == []


def test_an_input_is_checked_against_its_own_jobs_endpoint(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_job("embed", endpoint="/v1/embeddings", model="text-embedding-3-small", requests=4)
    repo.write_job("chat", requests=2)
    result = run_cli("validate", *repo.args())
    assert (result.exit_code, result.stdout) == (0, "2 jobs, 0 providers: valid\n"), result.stderr
