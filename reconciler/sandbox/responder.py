"""A tiny deterministic "model": answers each batch request with a realistic response body.

Which models exist (anything else is `model_not_found` at validation):
  chat         gpt-*, chatgpt-*, o1*, o3*, o4*     /v1/chat/completions, /v1/responses
  completion   gpt-3.5-turbo-instruct, davinci-002, babbage-002    /v1/completions
  embedding    text-embedding-*                    /v1/embeddings
  moderation   omni-moderation-*, text-moderation-*    /v1/moderations
  image        dall-e-*, gpt-image-*               /v1/images/generations, /v1/images/edits
  video        sora-*                              /v1/videos (the sandbox answers 400: no video)
A name containing "does-not-exist" never exists. A model used on an endpoint its family does
not serve, or a body missing the endpoint's main field, is answered with a 400 line, like the
real API. A body is a pure function of (endpoint, request body): same input, same bytes.
Text bodies: chat completions, completions and responses; non-text bodies: embeddings,
moderations and images.

Pre-encoded JSON is spliced into a document after encoding (`Fragments`).  An embedding is
1,536 floats; encoding them one by one made a 50,000-line embeddings batch take minutes.
Vectors are built as text from a table instead and spliced in, in one pass: replacing
placeholders one at a time rescanned and copied the whole line per vector, quadratic in a
line's inputs (2,048 inputs of 1,536 floats: minutes for one line).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.sandbox.disk import Usage

_MARK = "\ue000"  # a private-use character: no answer body contains it by itself


class Fragments:
    def __init__(self) -> None:
        self._texts: dict[str, str] = {}

    def hold(self, text: str) -> str:
        """A placeholder to put in the document where `text` (valid JSON) belongs."""
        key = f"{_MARK}{len(self._texts)}{_MARK}"
        self._texts[key] = text
        return key

    def splice(self, encoded: str) -> str:
        """`encoded` with each placeholder replaced; they appear in the order they were held,
        so each is looked for only after the one before it."""
        pieces: list[str] = []
        start = 0
        for key, text in self._texts.items():
            quoted = json.dumps(key)
            found = encoded.find(quoted, start)
            if found < 0:  # not in the document: nothing to replace
                continue
            pieces += (encoded[start:found], text)
            start = found + len(quoted)
        pieces.append(encoded[start:])
        return "".join(pieces)


# A response body, its token usage, and any pre-encoded parts to splice in (see `Fragments`).
Built = tuple[dict[str, Any], Usage, Fragments | None]

_EPOCH = 1_700_000_000  # bodies are pure functions of the request, so `created` is derived too
_YEAR = 365 * 24 * 3600


def created(digest: str) -> int:
    return _EPOCH + int(digest[:8], 16) % _YEAR


def tokens(text: str) -> int:
    """Roughly what a tokenizer would count for English: four characters a token."""
    return max(1, (len(text) + 3) // 4)


def text_of(value: Any) -> str:
    """Every string inside a prompt, messages list or content parts, joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(text_of(item) for item in value)
    if isinstance(value, dict):
        return " ".join(text_of(value.get(key)) for key in ("content", "text") if key in value)
    return ""


def how_many(value: Any, highest: int) -> int:
    """A body's `n`, kept to 1..highest whatever was sent."""
    if not isinstance(value, int) or isinstance(value, bool):
        return 1
    return max(1, min(value, highest))


def reply(prompt: str, digest: str, limit: Any) -> tuple[str, str]:
    """A deterministic reply and its finish reason, cut at the request's token limit if any."""
    snippet = " ".join(prompt.split())[:160]
    text = f"Sandbox answer {digest[:8]}: you asked about “{snippet}”."
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < tokens(text):
        return text[: limit * 4], "length"
    return text, "stop"


def chat_completion(body: dict[str, Any], digest: str) -> Built:
    messages = body["messages"]
    prompt = text_of([message for message in messages if message.get("role") != "system"])
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    choices: list[dict[str, Any]] = []
    written = 0
    for index in range(how_many(body.get("n"), 8)):
        text, finish = reply(prompt, digest[index:] + digest[:index], limit)
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": finish})
        written += tokens(text)
    # like the real chat format: each message wrapped in 4 tokens, 3 more prime the reply
    read = tokens(text_of(messages)) + 4 * len(messages) + 3
    usage = Usage(input_tokens=read, output_tokens=written)
    return (
        {
            "id": f"chatcmpl-{digest[:29]}",
            "object": "chat.completion",
            "created": created(digest),
            "model": body["model"],
            "choices": choices,
            "usage": {
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
            "service_tier": "default",
            "system_fingerprint": f"fp_{digest[29:39]}",
        },
        usage,
        None,
    )


def completion(body: dict[str, Any], digest: str) -> Built:
    prompt = text_of(body["prompt"])
    text, finish = reply(prompt, digest, body.get("max_tokens"))
    usage = Usage(input_tokens=tokens(prompt), output_tokens=tokens(text))
    choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
    return (
        {
            "id": f"cmpl-{digest[:29]}",
            "object": "text_completion",
            "created": created(digest),
            "model": body["model"],
            "choices": [choice],
            "usage": {
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens,
            },
        },
        usage,
        None,
    )


def response(body: dict[str, Any], digest: str) -> Built:
    prompt = text_of(body["input"])
    text, finish = reply(prompt, digest, body.get("max_output_tokens"))
    usage = Usage(input_tokens=tokens(prompt), output_tokens=tokens(text))
    content = {"type": "output_text", "text": text, "annotations": []}
    message = {
        "type": "message",
        "id": f"msg_{digest[:48]}",
        "status": "completed",
        "role": "assistant",
        "content": [content],
    }
    return (
        {
            "id": f"resp_{digest[:48]}",
            "object": "response",
            "created_at": created(digest),
            "status": "completed" if finish == "stop" else "incomplete",
            "error": None,
            "incomplete_details": None if finish == "stop" else {"reason": "max_output_tokens"},
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": body["model"],
            "output": [message],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage.public(),
            "metadata": body.get("metadata") or {},
        },
        usage,
        None,
    )


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


_FAMILIES = (  # first match wins: the specific names before their broader prefixes
    ("text-embedding-", "embedding"),
    ("omni-moderation-", "moderation"),
    ("text-moderation-", "moderation"),
    ("dall-e-", "image"),
    ("gpt-image-", "image"),
    ("sora-", "video"),
    ("gpt-3.5-turbo-instruct", "completion"),
    ("davinci-002", "completion"),
    ("babbage-002", "completion"),
    ("gpt-", "chat"),
    ("chatgpt-", "chat"),
    ("o1", "chat"),
    ("o3", "chat"),
    ("o4", "chat"),
)

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
Builder = Callable[[dict[str, Any], str], Built]

# endpoint -> (model family it serves, the body field it cannot do without, body builder)
_ENDPOINTS: dict[str, tuple[str, str, Builder | None]] = {
    "/v1/chat/completions": ("chat", "messages", chat_completion),
    "/v1/responses": ("chat", "input", response),
    "/v1/completions": ("completion", "prompt", completion),
    "/v1/embeddings": ("embedding", "input", embeddings),
    "/v1/moderations": ("moderation", "input", moderation),
    "/v1/images/generations": ("image", "prompt", image),
    "/v1/images/edits": ("image", "prompt", image),
    "/v1/videos": ("video", "prompt", None),
}


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: dict[str, Any]
    usage: Usage
    fragments: Fragments | None = None  # pre-encoded parts of `body`, spliced in when written


@functools.lru_cache(maxsize=1024)  # few distinct names, asked about once per request
def family(model: str) -> str | None:
    name = model.lower()
    if "does-not-exist" in name:
        return None
    return next((kind for prefix, kind in _FAMILIES if name.startswith(prefix)), None)


def refusal(endpoint: str, body: dict[str, Any]) -> str | None:
    """Why the model would answer this request with an HTTP 400, or None if it answers 200."""
    kind, needed, builder = _ENDPOINTS[endpoint]
    model = body.get("model")
    if builder is None:
        return f"The sandbox does not implement {endpoint}."
    if not isinstance(model, str) or family(model) != kind:
        return f"The model '{model}' is not supported by {endpoint}."
    value = body.get(needed)
    if value in (None, "", []):
        return f"Missing required parameter: '{needed}'."
    if not _well_formed(needed, value):
        return f"Invalid type for '{needed}'."
    return None


def _well_formed(field: str, value: Any) -> bool:
    if field == "messages":
        return isinstance(value, list) and all(isinstance(item, dict) for item in value)
    return isinstance(value, str | list)


def answer(endpoint: str, body: dict[str, Any]) -> Answer:
    problem = refusal(endpoint, body)
    if problem is not None:
        return _bad_request(problem)
    builder = _ENDPOINTS[endpoint][2]
    assert builder is not None  # refusal() turned the builder-less endpoints away
    # Builders accept any body refusal() let through: validation counts failures with refusal()
    # alone, so an exception here would make the counts disagree with the files.
    made, usage, fragments = builder(body, _digest(endpoint, body))
    return Answer(200, made, usage, fragments)


def _bad_request(message: str) -> Answer:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return Answer(400, {"error": error}, Usage())


def _digest(endpoint: str, body: dict[str, Any]) -> str:
    canonical = _CANONICAL.encode([endpoint, body])
    return hashlib.sha256(canonical.encode()).hexdigest()
