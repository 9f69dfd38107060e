"""Memory follows what the reconciler needs, not what a server sends: `reconcile --wait` runs as
a child process against a sandbox behind a hostile proxy (or with a hostile channel), and its
peak resident memory, as the kernel counts it, stays within a bound far below what it took
before: one gzip'd line of half a gibibyte, 1.5 million answers to requests never sent, a
channel answering with half a gibibyte.
"""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from reconciler.engine.outcomes import MAX_LINE_BYTES
from reconciler.sandbox import Sandbox
from tests.events_helpers import Receiver
from tests.fixtures.daemon import reconciler_env
from tests.fixtures.repo import UserRepo
from tests.fixtures.sandbox import SandboxFactory
from tests.hostile_proxy import Body, HostileProxy, hostile_proxy
from tests.peak_rss import MIB, Measured, run_measured
from tests.reconcile_helpers import state_of

HUGE_LINE = 512 * MIB  # four times the bound of one line
GHOSTS = 1_500_000  # answers to custom_ids nobody sent: ~110 MB of lines
PEAK_BOUND = 200 * MIB  # such a run takes about 50 MiB; before, each took a gibibyte or more
# httpx inflates each 64 KiB read of a gzip body whole: at deflate's ~1000:1 that is up to
# ~66 MB at once, however long the file (measured: ~240 MiB here, the same for longer lines).
PEAK_BOUND_INFLATING = 400 * MIB


@pytest.fixture
def proxy(sandbox: Sandbox) -> Iterator[HostileProxy]:
    with hostile_proxy(sandbox.base_url) as running:
        yield running


def _reconcile_wait(repo: UserRepo, base: object, scratch: Path, **env: str) -> Measured:
    command = [sys.executable, "-m", "reconciler", "reconcile", "--wait", *repo.args()]
    return run_measured(command, env=reconciler_env(base, **env), scratch=scratch)  # type: ignore[arg-type]


def _results(repo: UserRepo) -> dict[str, dict[str, object]]:
    lines = (repo.root / "out" / "big.jsonl").read_text().splitlines()
    return {line["custom_id"]: line for line in map(json.loads, lines)}


@cache
def _huge_line_compressed() -> tuple[bytes, Any]:
    """`{"custom_id": "req-00001", "response": {... "pad": "xxxx…"}}` of HUGE_LINE bytes, gzip'd
    (about half a megabyte on the wire), and the compressor, unfinished, to add more lines to."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: the gzip container
    start = b'{"id":"batch_req_huge","custom_id":"req-00001","response":{"status_code":200,"body":{"pad":"'
    end = b'"}},"error":null}\n'
    parts = [packer.compress(start)]
    block = b"x" * MIB
    for _ in range((HUGE_LINE - len(start) - len(end)) // MIB):
        parts.append(packer.compress(block))
    parts.append(packer.compress(end))
    return b"".join(parts), packer


def _gzip_after_the_huge_line(others: bytes) -> bytes:
    done, packer = _huge_line_compressed()
    rest = packer.copy()
    return bytes(done + rest.compress(others) + rest.flush())


@pytest.mark.slow
def test_an_output_line_of_half_a_gibibyte_is_an_error_for_its_request_not_the_memory_of_it(
    make_repo: Callable[..., UserRepo], proxy: HostileProxy, tmp_path: Path
) -> None:
    repo = make_repo()
    repo.write_job("big", requests=3, results="../out/big.jsonl")

    def hostile(file_id: str, real: bytes) -> Body:
        others = b"".join(line + b"\n" for line in real.splitlines() if b'"req-00001"' not in line)
        compressed = _gzip_after_the_huge_line(others)
        return Body([compressed], {"Content-Encoding": "gzip"}, length=len(compressed))

    proxy.replace_content = hostile
    measured = _reconcile_wait(repo, proxy, tmp_path / "measure")

    assert measured.returncode == 0, measured.stderr[-2000:]
    assert proxy.served >= 1
    results = _results(repo)
    error = results["req-00001"]["error"]
    assert isinstance(error, dict) and error["code"] == "line_too_long", results["req-00001"]
    assert results["req-00001"]["response"] is None
    assert all(results[f"req-0000{i}"]["response"] for i in (2, 3))
    assert f"over the {MAX_LINE_BYTES // MIB} MiB bound of one result line" in measured.stderr
    assert "Traceback" not in measured.stderr
    assert measured.peak_bytes < PEAK_BOUND_INFLATING, f"peak RSS {measured.peak_bytes / MIB:.0f} MiB"


def _ghost_lines() -> Iterator[bytes]:
    usage = b'"usage":{"prompt_tokens":1000,"completion_tokens":1000,"total_tokens":2000}'
    batch = []
    for number in range(GHOSTS):
        batch.append(
            b'{"id":"batch_req_g%d","custom_id":"ghost-%d","response":{"status_code":200,"body":{%s}},"error":null}\n'
            % (number, number, usage)
        )
        if len(batch) == 10_000:
            yield b"".join(batch)
            batch = []
    yield b"".join(batch)


@pytest.mark.slow
def test_answers_to_requests_never_sent_are_ignored_not_indexed_nor_billed(
    make_repo: Callable[..., UserRepo], proxy: HostileProxy, tmp_path: Path
) -> None:
    repo = make_repo()
    repo.write_job("big", requests=3, results="../out/big.jsonl")

    def hostile(file_id: str, real: bytes) -> Body | None:
        if b"batch_req_" not in real:
            return None
        return Body(iter([real, *_ghost_lines()]))  # chunked: ~110 MB

    proxy.replace_content = hostile
    measured = _reconcile_wait(repo, proxy, tmp_path / "measure")

    assert measured.returncode == 0, measured.stderr[-2000:]
    results = _results(repo)
    assert sorted(results) == ["req-00001", "req-00002", "req-00003"]
    assert all(line["response"] for line in results.values())
    [usage] = state_of(repo.root)["jobs"]["big"]["usage"].values()
    assert usage["requests"] == 3  # the ghosts' 3 billion tokens are not on the bill
    assert f"{GHOSTS:,} line(s) for requests this job never sent" in measured.stderr
    assert measured.peak_bytes < PEAK_BOUND, f"peak RSS {measured.peak_bytes / MIB:.0f} MiB"


@pytest.mark.slow
def test_a_channel_answering_half_a_gibibyte_is_not_read(
    make_repo: Callable[..., UserRepo], sandbox_factory: SandboxFactory, receiver: Receiver, tmp_path: Path
) -> None:
    sandbox = sandbox_factory()
    repo = make_repo()
    repo.write_spec(
        "specs/channel.yaml",
        """
        apiVersion: reconciler/v1
        kind: Notification
        metadata: {name: flooding}
        spec:
          url: ${HOOK_URL}
          events: [completed]
        """,
    )
    repo.write_job("big", requests=3)
    receiver.plan = ["flood"]

    measured = _reconcile_wait(repo, sandbox, tmp_path / "measure", HOOK_URL=f"{receiver.url}/hook")

    assert measured.returncode == 0, measured.stderr[-2000:]
    assert "big: completed sent to notification flooding" in measured.stdout, measured.stdout
    assert len(receiver.received) == 1 and state_of(repo.root)["notices"]["outbox"] == []
    assert receiver.flood_sent < receiver.flood_bytes // 4  # it stopped taking what was sent
    assert measured.peak_bytes < PEAK_BOUND, f"peak RSS {measured.peak_bytes / MIB:.0f} MiB"
