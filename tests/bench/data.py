"""Inputs and repos for the benchmarks, written fast: specs from a text template, inputs in
large writes. Each chat line is a realistic ~4 KB request: a system prompt, a document to
work on and a question, as a nightly eval or a bulk summarisation would send.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
MODEL = "gpt-4o-mini"
EMBEDDING_MODEL = "text-embedding-3-small"

_SYSTEM = (
    "You are a careful analyst. Read the document the user gives you, then answer the question "
    "that follows it. Quote the sentence your answer rests on, say how sure you are on a scale "
    "from 1 to 5, and keep the answer under one hundred words. If the document does not answer "
    "the question, say so plainly instead of guessing. "
)
_SENTENCES = (
    "The quarterly report shows revenue growing by eleven percent while costs stayed flat.",
    "Customers in the northern region renewed their contracts at a higher rate than last year.",
    "The support team closed most tickets within two days, though some waited over a week.",
    "A new onboarding flow reduced the number of abandoned sign-ups by nearly a third.",
    "Engineering shipped the migration to the new database without any recorded downtime.",
    "Marketing spend moved from print advertising towards search and partner programmes.",
    "Two of the five warehouses reported shortages of packaging material in March.",
    "The board approved a hiring plan that adds forty people across sales and research.",
)
_QUESTIONS = (
    "Which change had the largest effect on customer retention?",
    "Did operating costs rise, fall or stay the same?",
    "What risk does the document mention for the supply chain?",
    "Summarise the engineering work in one sentence.",
)


def chat_request(index: int, line_bytes: int = 4096) -> dict[str, Any]:
    """Request number `index`; its JSON line is about `line_bytes` long."""
    document: list[str] = []
    length = 0
    step = 0
    target = max(0, line_bytes - 700)  # the envelope, system prompt and question take ~700 bytes
    while length < target:
        sentence = _SENTENCES[(index + step * 3) % len(_SENTENCES)]
        document.append(sentence)
        length += len(sentence) + 1
        step += 1
    question = _QUESTIONS[index % len(_QUESTIONS)]
    content = f"Document {index}:\n{' '.join(document)}\n\nQuestion: {question}"
    body = {
        "model": MODEL,
        "messages": [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": content}],
        "max_tokens": 256,
        "temperature": 0.2,
    }
    return {"custom_id": f"req-{index:06d}", "method": "POST", "url": CHAT, "body": body}


def embedding_request(index: int) -> dict[str, Any]:
    text = f"{_SENTENCES[index % len(_SENTENCES)]} (passage {index})"
    body = {"model": EMBEDDING_MODEL, "input": text}
    return {"custom_id": f"emb-{index:06d}", "method": "POST", "url": EMBEDDINGS, "body": body}


def to_jsonl(lines: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)


def write_lines(path: Path, lines: Iterable[dict[str, Any]]) -> int:
    """Writes JSONL in large blocks; returns the file's size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb", buffering=8 << 20) as out:
        for line in lines:
            out.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
    return path.stat().st_size


def write_chat_input(path: Path, requests: int, line_bytes: int = 4096, first: int = 1) -> int:
    return write_lines(path, (chat_request(i, line_bytes) for i in range(first, first + requests)))


def write_embedding_input(path: Path, requests: int) -> int:
    return write_lines(path, (embedding_request(i) for i in range(1, requests + 1)))


_SPEC = """\
apiVersion: reconciler/v1
kind: BatchJob
metadata:
  name: {name}
  labels: {{team: bench}}
spec:
  endpoint: {endpoint}
  input: ../data/{input}
  metadata: {{description: benchmark job {name}}}
"""


@dataclass(frozen=True)
class BenchRepo:
    root: Path

    @property
    def specs(self) -> Path:
        return self.root / "specs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def state(self) -> Path:
        return self.root / ".reconciler" / "state.json"

    def args(self, *extra: str) -> list[str]:
        return ["--repo", str(self.root), *extra]

    def write_job(
        self, name: str, input_name: str, *, endpoint: str = CHAT, results: str | None = None
    ) -> Path:
        """specs/<name>.yaml reading data/<input_name>; `results` is a path under results/."""
        text = _SPEC.format(name=name, input=input_name, endpoint=endpoint)
        if results:
            text += f"  results: ../results/{results}\n"
        path = self.specs / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        return path


def make_repo(root: Path) -> BenchRepo:
    for folder in ("specs", "data"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    return BenchRepo(root)


def job_names(count: int, prefix: str = "job") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


def repo_with_jobs(
    root: Path, count: int, *, requests: int = 20, shared_inputs: int | None = None
) -> BenchRepo:
    """`count` chat jobs with small inputs: one input per job, or `shared_inputs` shared ones."""
    repo = make_repo(root)
    files = count if shared_inputs is None else max(1, shared_inputs)
    for number in range(files):
        write_chat_input(repo.data / f"input-{number:05d}.jsonl", requests, 1024, first=number * requests + 1)
    for index, name in enumerate(job_names(count)):
        repo.write_job(name, f"input-{index % files:05d}.jsonl")
    return repo
