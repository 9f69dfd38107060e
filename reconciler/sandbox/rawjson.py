"""Pre-encoded JSON spliced into a document after encoding.

An embedding is 1,536 floats; encoding them one by one made a 50,000-line embeddings batch
take minutes. Vectors are built as text from a table instead and spliced in here, in one
pass: replacing placeholders one at a time rescanned and copied the whole line per vector,
quadratic in a line's inputs (2,048 inputs of 1,536 floats: minutes for one line).
"""

from __future__ import annotations

import json

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
