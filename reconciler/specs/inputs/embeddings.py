"""How many inputs an embeddings request holds: the API's embeddings limits count inputs, not
requests (a request's `input` may be a list of texts)."""

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
