"""Non-text bodies of the tiny model: embeddings, moderations and images."""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any

from reconciler.sandbox.model_text import created, how_many, text_of, tokens
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


def vector(seed: str, dimensions: int) -> list[float]:
    """A unit vector drawn from a hash: same text, same vector; different texts, unrelated ones."""
    raw = hashlib.shake_256(seed.encode()).digest(dimensions * 2)
    centred = [value - 32767.5 for value in struct.unpack(f"<{dimensions}H", raw)]
    norm = math.sqrt(sum(value * value for value in centred)) or 1.0
    return [round(value / norm, 7) for value in centred]


def embeddings(body: dict[str, Any], digest: str) -> tuple[dict[str, Any], Usage]:
    model = body["model"]
    size = 3072 if "large" in model else 1536
    wanted = body.get("dimensions")
    if isinstance(wanted, int) and not isinstance(wanted, bool) and 0 < wanted < size:
        size = wanted
    data = []
    for index, item in enumerate(_items(body["input"])):
        values = vector(f"{model}\x00{size}\x00{item!r}", size)
        encoded: Any = values
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{size}f", *values)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    used = sum(tokens(text_of(item) or str(item)) for item in _items(body["input"]))
    body_out = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": used, "total_tokens": used},
    }
    return body_out, Usage(input_tokens=used)


def moderation(body: dict[str, Any], digest: str) -> tuple[dict[str, Any], Usage]:
    results = []
    for index in range(len(_items(body["input"]))):
        scores = vector(f"{digest}\x00{index}", len(_CATEGORIES))
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
    return {"id": f"modr-{digest[:32]}", "model": body["model"], "results": results}, Usage()


def image(body: dict[str, Any], digest: str) -> tuple[dict[str, Any], Usage]:
    prompt = text_of(body["prompt"])
    data = [{"b64_json": _PIXEL, "revised_prompt": prompt} for _ in range(how_many(body.get("n"), 4))]
    usage = Usage(input_tokens=tokens(prompt), output_tokens=len(data) * 272)
    return {
        "created": created(digest),
        "data": data,
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
        },
    }, usage
