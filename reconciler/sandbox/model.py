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
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.sandbox import model_text, model_vectors
from reconciler.sandbox.model_text import Built
from reconciler.sandbox.rawjson import Fragments
from reconciler.sandbox.records import Usage

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
    "/v1/chat/completions": ("chat", "messages", model_text.chat_completion),
    "/v1/responses": ("chat", "input", model_text.response),
    "/v1/completions": ("completion", "prompt", model_text.completion),
    "/v1/embeddings": ("embedding", "input", model_vectors.embeddings),
    "/v1/moderations": ("moderation", "input", model_vectors.moderation),
    "/v1/images/generations": ("image", "prompt", model_vectors.image),
    "/v1/images/edits": ("image", "prompt", model_vectors.image),
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
