"""The token heuristic's error against a real tokenizer (o200k_base, gpt-4o's), on the sample inputs.

Not part of the test run: the tokenizer is not a dependency. Run it where `bpe-openai` (which
ships o200k_base inside its wheel, so it works offline) is installed:

    python -m venv /tmp/tok && /tmp/tok/bin/pip install bpe-openai pyyaml pydantic
    PYTHONPATH=. /tmp/tok/bin/python -m tests.bench.token_error

The reference count is OpenAI's documented chat format: 3 tokens per message, its role and
content tokenized, 3 to prime the reply; embeddings count the input's tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconciler.specs.inputs.tokens import request_tokens
from tests.bench.data import chat_request, embedding_request
from tests.fixtures.repo import request_lines

ROOT = Path(__file__).resolve().parents[2]


def reference(encode: Any, endpoint: str, body: dict[str, Any]) -> int:
    if endpoint == "/v1/embeddings":
        return len(encode(body["input"]))
    total = 3
    for message in body["messages"]:
        total += 3 + len(encode(message["role"])) + len(encode(message["content"]))
    return total


def samples() -> dict[str, list[dict[str, Any]]]:
    quickstart = [
        json.loads(line) for line in (ROOT / "data" / "nightly-eval.jsonl").read_text().splitlines()
    ]
    return {
        "data/nightly-eval.jsonl (quickstart)": quickstart,
        "tests' request_lines (chat, 100)": request_lines(100),
        "bench chat requests (~4 KB, 200)": [chat_request(i) for i in range(200)],
        "bench embedding requests (200)": [embedding_request(i) for i in range(200)],
    }


def main() -> None:
    import bpe_openai  # type: ignore[import-not-found]

    encode = bpe_openai.get_encoding("o200k_base").encode
    print("| sample | requests | o200k tokens | estimated | error |")
    print("|---|---:|---:|---:|---:|")
    for name, lines in samples().items():
        real = sum(reference(encode, line["url"], line["body"]) for line in lines)
        guess = sum(request_tokens(line["url"], line["body"])[0] for line in lines)
        print(f"| {name} | {len(lines)} | {real:,} | {guess:,} | {(guess - real) / real:+.1%} |")


if __name__ == "__main__":
    main()
