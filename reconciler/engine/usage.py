"""Token usage summed over answers: each endpoint names its counts its own way."""

from __future__ import annotations

# The API's names for the same three counts (chat and embeddings say prompt/completion).
_ALIASES = {
    "input_tokens": "input_tokens",
    "prompt_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "completion_tokens": "output_tokens",
    "total_tokens": "total_tokens",
}


class UsageSum:
    def __init__(self) -> None:
        self._totals: dict[str, int] = {}

    def add(self, response: object) -> None:
        """Adds a result line's `response.body.usage`, when it has one."""
        body = response.get("body") if isinstance(response, dict) else None
        usage = body.get("usage") if isinstance(body, dict) else None
        if not isinstance(usage, dict):
            return
        for key, value in usage.items():
            name = _ALIASES.get(key)
            if name and isinstance(value, int) and not isinstance(value, bool):
                self._totals[name] = self._totals.get(name, 0) + value

    def totals(self) -> dict[str, int]:
        return dict(sorted(self._totals.items()))
