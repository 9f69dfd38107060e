"""Two sandbox servers, in two processes, on one data dir: no corruption, no double work."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import openai
import pytest

from tests.fixtures.sandbox import FAST_FLAGS, SandboxFactory, cli_sandbox, request_lines, upload, wait_for

ENDPOINT: Final = "/v1/chat/completions"


@pytest.mark.slow
def test_two_servers_in_two_processes_share_one_data_dir_without_corrupting_it(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    data = tmp_path / "shared"
    here = sandbox_factory(data)
    with cli_sandbox(data, *FAST_FLAGS) as (_, there_url):
        clients = [
            openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=60)
            for url in (here.base_url, there_url)
        ]

        def create(index: int) -> str:
            maker = clients[index % 2]
            file_id = upload(maker, request_lines(5, prefix=f"b{index}")).id
            return maker.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h").id

        def finish(job: tuple[str, openai.OpenAI]) -> str:
            return wait_for(job[1], job[0]).status

        with ThreadPoolExecutor(max_workers=40) as pool:
            ids = list(pool.map(create, range(20)))
            # Both servers poll every batch at once: both race to validate it and write its files.
            finished = list(pool.map(finish, [(batch_id, client) for batch_id in ids for client in clients]))
        assert set(finished) == {"completed"}
        views = [[b.model_dump() for b in client.batches.list(limit=100)] for client in clients]

    assert views[0] == views[1]
    assert sorted(b["id"] for b in views[0]) == sorted(ids)
    assert all(b["status"] == "completed" for b in views[0])
    outputs = [f for f in clients[0].files.list() if f.purpose == "batch_output"]
    assert sorted(f.id for f in outputs) == sorted(b["output_file_id"] for b in views[0])
    for batch in views[0]:
        index = ids.index(batch["id"])
        text = clients[0].files.content(batch["output_file_id"]).text
        assert sorted(json.loads(line)["custom_id"] for line in text.splitlines()) == [
            f"b{index}-{i}" for i in range(5)
        ]
    assert not list((data / "tmp").iterdir()) and not list((data / "inputs").iterdir())
    for record in (data / "batches").iterdir():
        json.loads(record.read_text())
