"""Token counts of a request body, estimated while its line is checked: no tokenizer, no network;
and how many inputs an embeddings request holds (the API's embeddings limits count inputs, not
requests: a request's `input` may be a list of texts).

The heuristic, and why: a BPE tokenizer (tiktoken and kin) needs its encoding files, which are
downloaded at run time, and tokenizing a 200 MB input costs many times what parsing it does.
So text is counted as four characters a token (one per UTF-8 byte quartet for non-ASCII text,
which tokenizes denser), over what the model reads — message contents, prompts, inputs,
instructions, tool definitions — never the JSON syntax around them; a chat message adds the
four tokens the chat format wraps it in, and a conversation the three that prime the reply.
An image part counts 765 tokens (a 1024x1024 image at high detail), 85 at `detail: low`.
Measured against the o200k tokenizer on the sample inputs: see README "Cost".

Output is bounded by the request's own limit (`max_completion_tokens`, `max_tokens`,
`max_output_tokens`, times `n`); a request without one is counted as unbounded and priced at
its model's output cap, if known. Embeddings and moderations write no tokens.
"""

from __future__ import annotations

import json
from typing import Any

EMBEDDINGS = "/v1/embeddings"


def inputs_of(value: Any) -> int:
    """One string or one token list is one input; a list of strings or token lists, one each."""
    if type(value) is list and value and not all(type(item) is int for item in value):
        return len(value)
    return 1


def line_inputs(line: bytes) -> int:
    """The inputs of one request line (already checked by validate; anything odd counts one)."""
    try:
        body = json.loads(line).get("body")
    except (ValueError, AttributeError):
        return 1
    return inputs_of(body.get("input")) if type(body) is dict else 1


CHARS_PER_TOKEN = 4
MESSAGE_TOKENS = 4  # <|start|>role … <|end|> around each chat message
REPLY_TOKENS = 3  # <|start|>assistant<|message|> priming the reply
IMAGE_TOKENS, LOW_DETAIL_IMAGE_TOKENS = 765, 85
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # /v1/completions writes 16 tokens when max_tokens is absent
UNBOUNDED = -1

_NO_OUTPUT = ("/v1/embeddings", "/v1/moderations")


def request_tokens(endpoint: str, body: dict[str, Any]) -> tuple[int, int]:
    """(estimated input tokens, the output limit; 0 for none written, UNBOUNDED without a limit)."""
    if endpoint == "/v1/chat/completions":
        messages = body.get("messages")
        fixed = (len(messages) if type(messages) is list else 0) * MESSAGE_TOKENS + REPLY_TOKENS
        chars = _message_chars(messages) + _chars(body.get("tools"))
        limit = _limit(body, "max_completion_tokens", "max_tokens")
    elif endpoint == "/v1/responses":
        fixed = REPLY_TOKENS
        chars = _chars(body.get("input")) + _chars(body.get("instructions")) + _chars(body.get("tools"))
        limit = _limit(body, "max_output_tokens")
    else:
        fixed = 0
        chars = _chars(body.get("input") if "input" in body else body.get("prompt"))
        limit = _limit(body, "max_tokens")
        if limit == UNBOUNDED and endpoint == "/v1/completions":
            limit = COMPLETIONS_DEFAULT_MAX_TOKENS
    if endpoint in _NO_OUTPUT:
        limit = 0
    elif limit != UNBOUNDED:
        limit *= _n(body.get("n"))
    return fixed - (-chars // CHARS_PER_TOKEN), limit


# Keys that are format, not what the model reads.
_SKIPPED_KEYS = frozenset(("role", "type", "id", "call_id", "status"))
# An image counts as the characters of its tokens, so one sum holds text and images.
_IMAGE_CHARS = IMAGE_TOKENS * CHARS_PER_TOKEN
_LOW_IMAGE_CHARS = LOW_DETAIL_IMAGE_TOKENS * CHARS_PER_TOKEN


def _message_chars(messages: Any) -> int:
    """Chat messages; the common {role, content: text} one without walking it (most lines)."""
    if type(messages) is not list:
        return 0
    chars = 0
    for message in messages:
        content = message.get("content") if type(message) is dict else None
        if type(content) is str and len(message) == 2 and "role" in message:
            chars += len(content) if content.isascii() else len(content.encode("utf-8"))
        else:
            chars += _chars(message)
    return chars


def _chars(value: Any) -> int:
    """Characters of text in `value` (UTF-8 bytes when not ASCII), images as their tokens' worth."""
    kind = type(value)
    if kind is str:
        return len(value) if value.isascii() else len(value.encode("utf-8"))
    if kind is list:
        if value and type(value[0]) is int:  # a prompt already in token ids
            return len(value) * CHARS_PER_TOKEN
        return sum(_chars(item) for item in value)
    if kind is dict:
        if value.get("type") in ("image_url", "input_image"):
            return _image_chars(value)
        return sum(_chars(item) for key, item in value.items() if key not in _SKIPPED_KEYS)
    return 0


def _image_chars(part: dict[str, Any]) -> int:
    nested = part.get("image_url")
    detail = part.get("detail") or (nested.get("detail") if type(nested) is dict else None)
    return _LOW_IMAGE_CHARS if detail == "low" else _IMAGE_CHARS


def _limit(body: dict[str, Any], *names: str) -> int:
    for name in names:
        value = body.get(name)
        if type(value) is int and value > 0:
            return int(value)
    return UNBOUNDED


def _n(value: Any) -> int:
    return value if type(value) is int and value > 1 else 1
