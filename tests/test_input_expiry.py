"""Files expire: the sandbox gives `purpose=batch` files 30 days and honours `expires_after` on
upload, as the Files API does; a job's `input_expires_after` sets it on every input the
reconciler uploads, and its `output_expires_after` on every batch it creates (the output and
error files' lifetime), neither touching the job's generation."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import openai
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import MakeRepo, RunCli
from tests.fixtures.sandbox import to_jsonl, upload
from tests.reconcile_helpers import batches, sdk, use_sandbox

DAY = 24 * 3600
ONE_LINE = [
    {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o-mini"}}
]


def test_a_batch_file_expires_30_days_after_upload_and_other_purposes_never(
    sandbox_client: openai.OpenAI,
) -> None:
    batch_file = upload(sandbox_client, ONE_LINE)
    kept = sandbox_client.files.create(file=("notes.jsonl", io.BytesIO(b"{}\n")), purpose="user_data")

    assert batch_file.expires_at == batch_file.created_at + 30 * DAY
    assert sandbox_client.files.retrieve(batch_file.id).expires_at == batch_file.expires_at
    assert kept.expires_at is None


def test_the_sdks_expires_after_sets_the_files_expiry(sandbox_client: openai.OpenAI) -> None:
    created = sandbox_client.files.create(
        file=("input.jsonl", io.BytesIO(to_jsonl(ONE_LINE))),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 7200},
    )

    assert created.expires_at == created.created_at + 7200
    assert sandbox_client.files.retrieve(created.id).expires_at == created.expires_at


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "60"}, "expires_after.seconds"),
        (
            {"expires_after[anchor]": "created_at", "expires_after[seconds]": str(31 * DAY)},
            "expires_after.seconds",
        ),
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "2h"}, "expires_after.seconds"),
        ({"expires_after[anchor]": "created_at"}, "expires_after.seconds"),
        (
            {"expires_after[anchor]": "last_active_at", "expires_after[seconds]": "7200"},
            "expires_after.anchor",
        ),
        ({"expires_after[seconds]": "7200"}, "expires_after.anchor"),
    ],
    ids=["too-short", "too-long", "not-a-number", "no-seconds", "other-anchor", "no-anchor"],
)
def test_an_expiry_the_files_api_would_refuse_is_a_400_naming_it(
    sandbox_http: httpx.Client, fields: dict[str, str], param: str
) -> None:
    files = {"file": ("input.jsonl", io.BytesIO(to_jsonl(ONE_LINE)))}
    response = sandbox_http.post("/files", data={"purpose": "batch", **fields}, files=files)

    assert response.status_code == 400
    error: dict[str, Any] = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_value", param)
    assert sandbox_http.get("/files").json()["data"] == []  # nothing kept


def _input_files(sandbox: Sandbox) -> list[Any]:
    client = sdk(sandbox)
    return [client.files.retrieve(batch.input_file_id) for batch in batches(sandbox, "job")]


def test_input_expires_after_sets_the_expiry_of_every_uploaded_part_and_changes_no_generation(
    make_repo: MakeRepo, run_cli: RunCli, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sandbox(monkeypatch, sandbox)
    repo = make_repo()
    repo.write_job("job", requests=4, split={"max_requests": 2}, input_expires_after="7d")

    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0

    uploaded = _input_files(sandbox)
    assert len(uploaded) == 2
    assert [f.expires_at - f.created_at for f in uploaded] == [7 * DAY, 7 * DAY]
    (repo.specs / "job.yaml").write_text(
        (repo.specs / "job.yaml")
        .read_text(encoding="utf-8")
        .replace("input_expires_after: 7d", "input_expires_after: 1h"),
        encoding="utf-8",
    )
    planned = run_cli("plan", "--detailed-exitcode", *repo.args())
    assert planned.exit_code == 0, planned.stdout + planned.stderr  # no changes: no new batches


def test_without_input_expires_after_an_input_gets_the_providers_30_day_default(
    make_repo: MakeRepo, run_cli: RunCli, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sandbox(monkeypatch, sandbox)
    repo = make_repo()
    repo.write_job("job", requests=2)

    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0

    [uploaded] = _input_files(sandbox)
    assert uploaded.expires_at == uploaded.created_at + 30 * DAY  # the provider's default


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("30m", "between 1h and 30d"), ("31d", "between 1h and 30d"), ("soon", "not a duration")],
)
def test_validate_refuses_an_input_expiry_outside_what_the_files_api_accepts(
    make_repo: MakeRepo, run_cli: RunCli, value: str, fragment: str
) -> None:
    repo = make_repo()
    repo.write_job("job", input_expires_after=value)

    result = run_cli("validate", *repo.args())

    assert result.exit_code == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: specs/job.yaml:"), result.stderr
    assert "spec.input_expires_after:" in errors[0] and fragment in errors[0]
    assert repo.written() == []


def _output_files(sandbox: Sandbox, job: str) -> list[Any]:
    client = sdk(sandbox)
    return [client.files.retrieve(b.output_file_id) for b in batches(sandbox, job) if b.output_file_id]


def test_output_expires_after_is_sent_on_create_and_the_sandbox_expires_the_output_then(
    make_repo: MakeRepo, run_cli: RunCli, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sandbox(monkeypatch, sandbox)
    repo = make_repo()
    repo.write_job("job", requests=4, split={"max_requests": 2}, output_expires_after="2h")
    repo.write_job("plain", requests=2)

    done = run_cli("reconcile", "--wait", "--timeout", "60", *repo.args())

    assert done.exit_code == 0, done.stdout + done.stderr
    outputs = _output_files(sandbox, "job")
    assert len(outputs) == 2
    assert [f.expires_at - f.created_at for f in outputs] == [7200, 7200]
    [plain] = _output_files(sandbox, "plain")
    assert plain.expires_at == plain.created_at + 30 * DAY  # the default, nothing sent
    spec = repo.specs / "job.yaml"
    spec.write_text(spec.read_text().replace("output_expires_after: 2h", "output_expires_after: 3d"))
    planned = run_cli("plan", "--detailed-exitcode", *repo.args())
    assert planned.exit_code == 0, planned.stdout  # no new generation: nothing to create again


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("30m", "between 1h and 30d"), ("31d", "between 1h and 30d"), ("later", "not a duration")],
)
def test_validate_refuses_an_output_expiry_outside_what_the_batch_api_accepts(
    make_repo: MakeRepo, run_cli: RunCli, value: str, fragment: str
) -> None:
    repo = make_repo()
    repo.write_job("job", output_expires_after=value)

    result = run_cli("validate", *repo.args())

    assert result.exit_code == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: specs/job.yaml:"), result.stderr
    assert "spec.output_expires_after:" in errors[0] and fragment in errors[0]
    assert repo.written() == []


def test_output_expires_after_is_in_the_json_schema(run_cli: RunCli) -> None:
    schema = json.loads(run_cli("schema").stdout)
    spec = schema["$defs"]["BatchJobSpec"]["properties"]
    assert "output_expires_after" in spec and "input_expires_after" in spec
