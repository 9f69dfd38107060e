"""Memory stays flat: 200 MB uploads stream to disk and back, 50,000-line outputs stream to disk.

Each scenario runs in a fresh interpreter (sandbox and client in one process, as when the CLI
embeds the sandbox) and reports its own peak RSS.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.sandbox import cli_env

PEAK_LIMIT_MB = 150

UPLOAD = """
import hashlib, json, resource, sys
from pathlib import Path
import httpx
from reconciler.sandbox import SandboxConfig, start_sandbox

size = 200 * 1024 * 1024
line = json.dumps({"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
                   "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "y" * 900}]}})
piece = (line + "\\n").encode() * 1000
sent = hashlib.sha256()

def body():
    yield b'--b\\r\\nContent-Disposition: form-data; name="purpose"\\r\\n\\r\\nbatch\\r\\n'
    yield b'--b\\r\\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\\r\\n\\r\\n'
    left = size
    while left:
        chunk = piece[:left]
        sent.update(chunk)
        left -= len(chunk)
        yield chunk
    yield b"\\r\\n--b--\\r\\n"

with start_sandbox(Path(sys.argv[1]), SandboxConfig()) as sandbox:
    with httpx.Client(base_url=sandbox.base_url, timeout=120) as client:
        headers = {"Content-Type": "multipart/form-data; boundary=b"}
        made = client.post("/files", content=body(), headers=headers).json()
        back = hashlib.sha256()
        with client.stream("GET", f"/files/{made['id']}/content") as answer:
            for chunk in answer.iter_bytes(1 << 20):
                back.update(chunk)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest).
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print(json.dumps({"bytes": made["bytes"], "same": back.digest() == sent.digest(), "peak_mb": peak}))
"""

OUTPUT = """
import json, resource, sys
from pathlib import Path
import httpx
from reconciler.sandbox import SandboxConfig, start_sandbox

count = 50_000

def body():
    yield b'--b\\r\\nContent-Disposition: form-data; name="purpose"\\r\\n\\r\\nbatch\\r\\n'
    yield b'--b\\r\\nContent-Disposition: form-data; name="file"; filename="many.jsonl"\\r\\n\\r\\n'
    for start in range(0, count, 1000):  # a thousand lines per chunk sent
        lines = []
        for i in range(start, start + 1000):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Question {i}?"}]}
            lines.append(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}))
        yield ("\\n".join(lines) + "\\n").encode()
    yield b"\\r\\n--b--\\r\\n"

fast = SandboxConfig(validation_seconds=0, requests_per_second=1e9, finalizing_seconds=0)
with start_sandbox(Path(sys.argv[1]), fast) as sandbox:
    with httpx.Client(base_url=sandbox.base_url, timeout=300) as client:
        headers = {"Content-Type": "multipart/form-data; boundary=b"}
        made = client.post("/files", content=body(), headers=headers).json()
        request = {"input_file_id": made["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        batch_id = client.post("/batches", json=request).json()["id"]
        batch = client.get(f"/batches/{batch_id}").json()
        lines = 0
        with client.stream("GET", f"/files/{batch['output_file_id']}/content") as answer:
            for _ in answer.iter_lines():
                lines += 1
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest).
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print(json.dumps({"status": batch["status"], "counts": batch["request_counts"], "lines": lines, "peak_mb": peak}))
"""


def run_script(script: str, data: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", script, str(data)], capture_output=True, text=True, timeout=240, env=cli_env()
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


@pytest.mark.slow
def test_a_200_mb_upload_streams_to_disk_and_back_within_the_memory_limit(tmp_path: Path) -> None:
    report = run_script(UPLOAD, tmp_path)

    assert report["bytes"] == 200 * 1024 * 1024 and report["same"] is True
    assert isinstance(report["peak_mb"], float) and report["peak_mb"] < PEAK_LIMIT_MB


@pytest.mark.slow
def test_a_50000_line_batch_writes_its_output_without_holding_it(tmp_path: Path) -> None:
    report = run_script(OUTPUT, tmp_path)

    assert report["status"] == "completed" and report["lines"] == 50_000
    assert report["counts"] == {"total": 50_000, "completed": 50_000, "failed": 0}
    assert isinstance(report["peak_mb"], float) and report["peak_mb"] < PEAK_LIMIT_MB
