"""Text bodies of the tiny model: chat completions, completions and responses."""

from __future__ import annotations

from typing import Any

from reconciler.sandbox.rawjson import Fragments
from reconciler.sandbox.records import Usage

# A response body, its token usage, and any pre-encoded parts to splice in (see rawjson.py).
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
