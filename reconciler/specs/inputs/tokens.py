"""Token counts of a request body, estimated while its line is checked: no tokenizer, no network.

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

from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_TOKENS = 4  # <|start|>role … <|end|> around each chat message
REPLY_TOKENS = 3  # <|start|>assistant<|message|> priming the reply
IMAGE_TOKENS, LOW_DETAIL_IMAGE_TOKENS = 765, 85
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # /v1/completions writes 16 tokens when max_tokens is absent
UNBOUNDED = -1

_NO_OUTPUT = ("/v1/embeddings", "/v1/moderations")


def request_tokens(endpoint: str, body: dict[str, Any]) -> tuple[int, int]:
    """(estimated input tokens, the output limit; 0 for none written, UNBOUNDED without a limit)."""
    read = _Read()
    if endpoint == "/v1/chat/completions":
        messages = body.get("messages")
        fixed = (len(messages) if type(messages) is list else 0) * MESSAGE_TOKENS + REPLY_TOKENS
        read.walk(messages, body.get("tools"))
        limit = _limit(body, "max_completion_tokens", "max_tokens")
    elif endpoint == "/v1/responses":
        fixed = REPLY_TOKENS
        read.walk(body.get("input"), body.get("instructions"), body.get("tools"))
        limit = _limit(body, "max_output_tokens")
    else:
        fixed = 0
        read.walk(body.get("input") if "input" in body else body.get("prompt"))
        limit = _limit(body, "max_tokens")
        if limit == UNBOUNDED and endpoint == "/v1/completions":
            limit = COMPLETIONS_DEFAULT_MAX_TOKENS
    if endpoint in _NO_OUTPUT:
        limit = 0
    elif limit != UNBOUNDED:
        limit *= _n(body.get("n"))
    return fixed + read.tokens(), limit


_SKIPPED_KEYS = frozenset(("role", "type", "id", "call_id", "status"))  # format, not what the model reads


class _Read:
    """Characters of text, and images, found in what the model reads."""

    def __init__(self) -> None:
        self.chars = self.images = self.low_images = 0

    def tokens(self) -> int:
        images = self.images * IMAGE_TOKENS + self.low_images * LOW_DETAIL_IMAGE_TOKENS
        return images - (-self.chars // CHARS_PER_TOKEN)

    def walk(self, *values: Any) -> None:
        for value in values:
            self._walk(value)

    def _walk(self, value: Any) -> None:
        kind = type(value)
        if kind is str:
            self.chars += len(value) if value.isascii() else len(value.encode("utf-8"))
        elif kind is list:
            if value and type(value[0]) is int:  # a prompt already in token ids
                self.chars += len(value) * CHARS_PER_TOKEN
                return
            for item in value:
                self._walk(item)
        elif kind is dict:
            if value.get("type") in ("image_url", "input_image"):
                self._image(value)
                return
            for key, item in value.items():
                if key not in _SKIPPED_KEYS:
                    self._walk(item)

    def _image(self, part: dict[str, Any]) -> None:
        nested = part.get("image_url")
        detail = part.get("detail") or (nested.get("detail") if type(nested) is dict else None)
        if detail == "low":
            self.low_images += 1
        else:
            self.images += 1


def _limit(body: dict[str, Any], *names: str) -> int:
    for name in names:
        value = body.get(name)
        if type(value) is int and value > 0:
            return int(value)
    return UNBOUNDED


def _n(value: Any) -> int:
    return value if type(value) is int and value > 1 else 1
