"""Embeddings count inputs, not requests: at most 2,048 in one request and 50,000 in one batch.

`validate` names the line that breaks either limit; `split` cuts parts where the next line would
pass 50,000 inputs; the sandbox fails a batch over either limit at that line, as the API does.
"""

from __future__ import annotations

import json
from typing import Any, Final

import openai
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo, planned
from tests.fixtures.sandbox import upload, wait_for
from tests.reconcile_helpers import batches, use_sandbox, wait_until

pytestmark = pytest.mark.timeout(120)

EMBEDDINGS: Final = "/v1/embeddings"
INPUT = "data/vectors.jsonl"


def line(number: int, inputs: int) -> dict[str, Any]:
    """One embeddings request of `inputs` short texts, asking for 1-float vectors (small output)."""
    texts = [f"{number}.{i}" for i in range(inputs)]
    body = {"model": "text-embedding-3-small", "input": texts, "dimensions": 1}
    return {"custom_id": f"line-{number}", "method": "POST", "url": EMBEDDINGS, "body": body}


def lines(*inputs: int) -> list[dict[str, Any]]:
    return [line(number, count) for number, count in enumerate(inputs, start=1)]


# 25 lines of 2,000 are exactly 50,000 inputs; line 26 takes them past it (53,300 in all).
OVER_THE_BATCH = (2_000,) * 26 + (1_300,)


def write_job(repo: UserRepo, requests: list[dict[str, Any]], **spec: Any) -> None:
    repo.write_input(INPUT, lines=requests)
    repo.write_job("vectors", input=INPUT, endpoint=EMBEDDINGS, model="text-embedding-3-small", **spec)


def errors_of(stderr: str) -> list[str]:
    return [text for text in stderr.splitlines() if text.startswith("error: ")]


def test_validate_names_the_line_with_more_than_2048_inputs(make_repo: MakeRepo, run_cli: RunCli) -> None:
    repo = make_repo()
    write_job(repo, lines(3, 2_048, 2_100, 1))

    result = run_cli("validate", *repo.args())

    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert errors_of(result.stderr) == [
        f"error: {INPUT}:3: body.input: 2,100 inputs; an embeddings request may have at most 2,048: "
        "spread them over more lines"
    ]
    assert repo.written() == []


def test_validate_names_the_line_that_takes_a_batch_past_50000_inputs_and_suggests_split(
    make_repo: MakeRepo, run_cli: RunCli
) -> None:
    repo = make_repo()
    write_job(repo, lines(*OVER_THE_BATCH))

    result = run_cli("validate", *repo.args())

    assert result.exit_code == 1 and "Traceback" not in result.stderr
    [error] = errors_of(result.stderr)
    assert error.startswith(
        f"error: {INPUT}:26: body.input: the embedding inputs pass 50,000 here (53,300 in all)"
    )
    assert "add `split:` to the spec" in error
    assert repo.written() == []


def test_validate_accepts_2048_inputs_a_line_and_50000_a_batch(make_repo: MakeRepo, run_cli: RunCli) -> None:
    repo = make_repo()
    write_job(repo, lines(*(2_000,) * 23, 2_048, 1_952))  # 50,000 exactly

    result = run_cli("validate", *repo.args())

    assert (result.exit_code, result.stdout) == (0, "1 job, 0 providers: valid\n"), result.stderr


def test_a_chat_job_counts_no_embedding_inputs(make_repo: MakeRepo, run_cli: RunCli) -> None:
    repo = make_repo()
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "input": list(range(3))}
    requests = [{"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": chat}]
    repo.write_input(INPUT, lines=requests)
    repo.write_job("chat", input=INPUT)

    assert run_cli("validate", *repo.args()).exit_code == 0


def test_split_cuts_embeddings_parts_at_50000_inputs_and_the_sandbox_completes_each(
    make_repo: MakeRepo, run_cli: RunCli, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sandbox(monkeypatch, sandbox)
    repo = make_repo()
    write_job(repo, lines(*OVER_THE_BATCH), split={"max_requests": 50_000})

    assert run_cli("validate", *repo.args()).exit_code == 0
    change = planned(run_cli, repo)["vectors"]
    assert (change["reason_code"], change["reason_data"]) == ("no_batch_yet", {"requests": 27, "parts": 2})
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0

    def finished() -> list[Any]:
        found = batches(sandbox, "vectors")
        return found if all(b.status == "completed" for b in found) else []

    made = wait_until(finished)
    parts = {b.metadata["reconciler_part"]: b.request_counts.total for b in made}
    assert parts == {"0": 25, "1": 2}  # 50,000 inputs, then 3,300


@pytest.mark.parametrize(
    ("inputs", "bad_line", "message"),
    [
        ((3, 2_100, 1), 2, "The request has 2100 inputs; an embeddings request may have at most 2048."),
        (OVER_THE_BATCH, 26, "This line takes the batch past 50000 embedding inputs"),
    ],
    ids=["2100-inputs-in-one-line", "53300-inputs-in-one-batch"],
)
def test_the_sandbox_fails_a_batch_over_an_embeddings_limit_naming_the_line(
    sandbox_client: openai.OpenAI, inputs: tuple[int, ...], bad_line: int, message: str
) -> None:
    file_id = upload(sandbox_client, lines(*inputs)).id
    created = sandbox_client.batches.create(
        input_file_id=file_id, endpoint=EMBEDDINGS, completion_window="24h"
    )

    batch = wait_for(sandbox_client, created.id)

    assert batch.status == "failed" and batch.output_file_id is None
    assert batch.errors is not None
    found = [(e.code, e.line, e.param) for e in batch.errors.data or []]
    assert found == [("invalid_request", bad_line, "body.input")]
    assert message in json.dumps([e.message for e in batch.errors.data or []])


def test_the_sandbox_completes_2048_inputs_a_line_and_50000_a_batch(sandbox_client: openai.OpenAI) -> None:
    file_id = upload(sandbox_client, lines(*(2_000,) * 23, 2_048, 1_952)).id
    created = sandbox_client.batches.create(
        input_file_id=file_id, endpoint=EMBEDDINGS, completion_window="24h"
    )

    batch = wait_for(sandbox_client, created.id)

    assert batch.status == "completed", batch.errors
    assert batch.request_counts is not None and batch.request_counts.completed == 25
