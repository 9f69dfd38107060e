"""Item 12: the sandbox writing embeddings results, linear in a line's inputs.

Its writer spliced each vector into the line with a search-and-copy of the whole line, so a
line cost the square of its inputs: 20 lines of 256 inputs took 11.8 s in the one
`GET /v1/batches/{id}` that writes them. The same GET is timed here, on batches of 256 and
2,048 inputs a line (the API's most): linear writing costs the same per input at both sizes.
"""

from __future__ import annotations

import io
import time
from typing import Any

import httpx

from tests.bench.context import Context
from tests.bench.data import EMBEDDINGS, to_jsonl
from tests.bench.sandbox import FAST_TIMELINE, external_sandbox
from tests.bench.table import Row, ratio, seconds

LINES = 20
SMALL, LARGE = 256, 2_048
SMALL_TARGET_SECONDS = 1.0
PER_INPUT_RATIO_TARGET = 2.0  # linear: about 1x; quadratic: 8x (2,048 / 256)


def measure(ctx: Context) -> list[Row]:
    repeats = max(ctx.scale.repeats, 2)
    with (
        external_sandbox(ctx.folder("embeddings"), **FAST_TIMELINE) as sandbox,
        httpx.Client(base_url=sandbox.base_url, timeout=900) as client,
    ):
        small = min(_written_in(client, LINES, SMALL) for _ in range(repeats))
        large = min(_written_in(client, 2, LARGE) for _ in range(repeats))
    per_input = (large / (2 * LARGE)) / (small / (LINES * SMALL))
    return [
        Row(
            "12",
            f"sandbox: the GET that writes {LINES} embeddings lines x {SMALL} inputs (1,536 floats)",
            f"< {seconds(SMALL_TARGET_SECONDS)}",
            seconds(small),
            small < SMALL_TARGET_SECONDS,
            "was 11.8 s with the quadratic writer",
        ),
        Row(
            "12",
            f"the same per input, 2 lines x {LARGE:,} inputs over {LINES} x {SMALL}",
            f"< {ratio(PER_INPUT_RATIO_TARGET)}",
            ratio(per_input),
            per_input < PER_INPUT_RATIO_TARGET,
            f"{seconds(large)} for {2 * LARGE:,} inputs; a quadratic writer would be about 8x",
        ),
    ]


def _written_in(client: httpx.Client, lines: int, inputs: int) -> float:
    """Seconds of the one GET that validates a finished batch and writes its output."""
    requests = (_request(line, inputs) for line in range(lines))
    files = {"file": ("vectors.jsonl", io.BytesIO(to_jsonl(requests)))}
    upload = client.post("/files", data={"purpose": "batch"}, files=files).json()
    body = {"input_file_id": upload["id"], "endpoint": EMBEDDINGS, "completion_window": "24h"}
    batch_id = client.post("/batches", json=body).json()["id"]
    time.sleep(1.0)  # past the fast timeline's end: the next GET does all the work
    started = time.perf_counter()
    batch: dict[str, Any] = client.get(f"/batches/{batch_id}").json()
    elapsed = time.perf_counter() - started
    if batch["status"] != "completed":
        raise RuntimeError(f"the batch ended {batch['status']}: {batch.get('errors')}")
    return elapsed


def _request(line: int, inputs: int) -> dict[str, Any]:
    texts = [f"line {line} text {i}: a sentence to embed" for i in range(inputs)]
    body = {"model": "text-embedding-3-small", "input": texts}
    return {"custom_id": f"emb-{line:04d}", "method": "POST", "url": EMBEDDINGS, "body": body}
