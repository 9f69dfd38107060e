"""Non-text bodies of the tiny model: embeddings, moderations and images."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
from array import array
from typing import Any

from reconciler.sandbox.model_text import Built, created, how_many, text_of, tokens
from reconciler.sandbox.rawjson import Fragments
from reconciler.sandbox.records import Usage

_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
# A 1x1 transparent PNG: an image body of realistic shape at almost no cost.
_PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def _items(value: Any) -> list[Any]:
    """An embeddings/moderations `input`: one string or token list, or a list of them."""
    if isinstance(value, list) and value and not all(isinstance(item, int) for item in value):
        return value
    return [value]


def input_count(value: Any) -> int:
    """How many inputs an embeddings `input` holds: what the API's embeddings limits count."""
    return len(_items(value))


@functools.lru_cache(maxsize=16)
def _levels(dimensions: int) -> tuple[tuple[float, ...], tuple[str, ...]]:
    """256 evenly spaced values, scaled so a vector of them has an expected length of 1."""
    spread = [(2 * level - 255) / 255 for level in range(256)]
    scale = math.sqrt(len(spread) / (dimensions * sum(x * x for x in spread)))
    values = tuple(round(scale * x, 9) for x in spread)
    return values, tuple(repr(value) for value in values)


def vector_json(seed: str, dimensions: int, as_base64: bool) -> str:
    """A vector drawn from a hash, as JSON text: same text, same vector; different texts,
    unrelated ones; about unit length, as real embeddings are."""
    raw = hashlib.shake_256(seed.encode()).digest(dimensions)
    values, texts = _levels(dimensions)
    if as_base64:
        packed = array("f", [values[byte] for byte in raw]).tobytes()
        return json.dumps(base64.b64encode(packed).decode())
    return "[" + ",".join([texts[byte] for byte in raw]) + "]"


def embeddings(body: dict[str, Any], digest: str) -> Built:
    model = body["model"]
    size = 3072 if "large" in model else 1536
    wanted = body.get("dimensions")
    if isinstance(wanted, int) and not isinstance(wanted, bool) and 0 < wanted < size:
        size = wanted
    as_base64 = body.get("encoding_format") == "base64"
    fragments = Fragments()
    data = []
    for index, item in enumerate(_items(body["input"])):
        text = vector_json(f"{model}\x00{size}\x00{item!r}", size, as_base64)
        data.append({"object": "embedding", "index": index, "embedding": fragments.hold(text)})
    used = sum(tokens(text_of(item) or str(item)) for item in _items(body["input"]))
    made = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": used, "total_tokens": used},
    }
    return made, Usage(input_tokens=used), fragments


def moderation(body: dict[str, Any], digest: str) -> Built:
    results = []
    for index in range(len(_items(body["input"]))):
        raw = hashlib.shake_256(f"{digest}\x00{index}".encode()).digest(len(_CATEGORIES))
        scores = [byte / 255_000 for byte in raw]
        results.append(
            {
                "flagged": False,
                "categories": dict.fromkeys(_CATEGORIES, False),
                "category_scores": {
                    name: round(abs(score) / 1000, 9) for name, score in zip(_CATEGORIES, scores, strict=True)
                },
                "category_applied_input_types": {name: ["text"] for name in _CATEGORIES},
            }
        )
    return {"id": f"modr-{digest[:32]}", "model": body["model"], "results": results}, Usage(), None


def image(body: dict[str, Any], digest: str) -> Built:
    prompt = text_of(body["prompt"])
    data = [{"b64_json": _PIXEL, "revised_prompt": prompt} for _ in range(how_many(body.get("n"), 4))]
    usage = Usage(input_tokens=tokens(prompt), output_tokens=len(data) * 272)
    return (
        {
            "created": created(digest),
            "data": data,
            "usage": {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens,
            },
        },
        usage,
        None,
    )
