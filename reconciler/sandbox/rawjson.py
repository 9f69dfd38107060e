"""Pre-encoded JSON spliced into a document after encoding.

An embedding is 1,536 floats; encoding them one by one made a 50,000-line embeddings batch
take minutes. Vectors are built as text from a table instead and spliced in here.
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
        for key, text in self._texts.items():
            encoded = encoded.replace(json.dumps(key), text, 1)
        return encoded
