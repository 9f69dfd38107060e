"""Cleaning every text a server sent before anything stores or shows it.

Two dangers: a server echoing a credential back (whole, with its tail masked, upper-cased),
and a server's text carrying line breaks or terminal escapes that would forge a log line or
rewrite the user's terminal.  `Scrubber.clean` walks a decoded JSON body and fixes both in
every string; `Scrubber.text` does it for one message.

`Scrubber.clean_body` first searches the raw bytes of the body once: a body with no JSON escape
(no backslash at all), no unsafe character and no secret or piece of one holds no string to
fix, since with no escapes each decoded string is a piece of those bytes.  Walking every string
of every list page was 14% of a plan over 10,000 batches; bodies are walked only when the
search finds something (`walked` counts them).
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


# What can only decode to an unsafe character, in a body's raw UTF-8: any escape (a backslash,
# which could also spell a secret as `\u0073k-…`), a control byte, DEL, a C1 control or a
# bidirectional override.  Raw controls in a JSON string are refused by the parser anyway.
_RAW_UNSAFE = re.compile(
    rb"[\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"  # an escape, a control byte (\t \n \r separate tokens), DEL
    rb"|\xc2[\x80-\x9f]"  # C1 controls
    rb"|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]"  # U+202A-202E, U+2066-2069
)
_PLAIN_ASCII = bytes(range(0x20, 0x7F)) + b"\t\n\r"


def _unsafe_bytes(raw: bytes) -> bool:
    """`_RAW_UNSAFE` in `raw`, after two quick looks (the pattern itself takes ~1 ms a page)."""
    if b"\\" in raw:
        return True
    if not raw.translate(None, _PLAIN_ASCII):  # printable ASCII and whitespace only
        return False
    return _RAW_UNSAFE.search(raw) is not None


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
        self.walked = 0  # bodies cleaned string by string (clean_body found something to fix)

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

    def clean_body(self, raw: bytes, value: Any) -> Any:
        """`value`, decoded from the JSON body `raw`, with every string cleaned; as it is when a
        search of the raw bytes shows there is nothing to clean."""
        if not self._may_hold_trouble(raw):
            return value
        self.walked += 1
        return self.clean(value)

    def _may_hold_trouble(self, raw: bytes) -> bool:
        """False only when no decoded string can hold an unsafe character, a secret or a piece
        of one: the search errs towards walking (a piece spanning two strings counts)."""
        if _unsafe_bytes(raw):
            return True
        if not self._secrets:
            return False
        text = raw.decode("utf-8", "replace")  # as the strings are decoded (invalid UTF-8 is no JSON)
        if any(secret in text for secret in self._secrets):
            return True
        lowered = text.lower()  # str.lower, as `redact` compares: a KELVIN SIGN lowers to "k"
        return any(piece in lowered for piece in self._pieces)

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
