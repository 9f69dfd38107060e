"""Cleaning every text a server sent before anything stores or shows it.

Two dangers: a server echoing a credential back (whole, with its tail masked, upper-cased),
and a server's text carrying line breaks or terminal escapes that would forge a log line or
rewrite the user's terminal.  `Scrubber.clean` walks a decoded JSON body and fixes both in
every string; `Scrubber.text` does it for one message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# A piece of a secret this long, in any case, is treated as the secret: long enough that an
# ordinary word never matches, short enough that `sk-…****` or half a key is caught.
MIN_PIECE = 8
MASK = "***"
# C0, DEL and C1 controls, and the bidirectional overrides that reorder what a terminal shows.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """`a\\nb` for a line break, `\\x1b` for ESC: the text stays readable and stays on one line."""
    return _UNSAFE.sub(_escaped, text) if _UNSAFE.search(text) else text


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    code = ord(char)
    return named or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


class Scrubber:
    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._pieces = {
            secret.lower()[i : i + MIN_PIECE]
            for secret in self._secrets
            if len(secret) >= MIN_PIECE
            for i in range(len(secret) - MIN_PIECE + 1)
        }

    def text(self, text: str) -> str:
        return escape_controls(self.redact(text))

    def redact(self, text: str) -> str:
        """Masks each secret, and any run of `MIN_PIECE` or more characters found in one (any case)."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        if not self._pieces or len(text) < MIN_PIECE:
            return text
        masked = _covered(text.lower(), self._pieces)
        if not any(masked):
            return text
        out: list[str] = []
        for i, char in enumerate(text):
            if not masked[i]:
                out.append(char)
            elif i == 0 or not masked[i - 1]:
                out.append(MASK)
        return "".join(out)

    def clean(self, value: Any) -> Any:
        """Every string in a decoded JSON value, keys included, redacted and escaped."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.clean(item) for item in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.clean(v) for k, v in value.items()}
        return value


def _covered(lowered: str, pieces: set[str]) -> list[bool]:
    masked = [False] * len(lowered)
    for start in range(len(lowered) - MIN_PIECE + 1):
        if lowered[start : start + MIN_PIECE] in pieces:
            for i in range(start, start + MIN_PIECE):
                masked[i] = True
    return masked
