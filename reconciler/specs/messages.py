"""The sentences a user reads for a spec problem: pydantic's errors, worded for YAML."""

from __future__ import annotations

import difflib
from typing import get_args

from pydantic import BaseModel
from pydantic_core import ErrorDetails


def closest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """`; did you mean 'x'?` when a choice is close, else ''."""
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def error_message(error: ErrorDetails, model: type[BaseModel]) -> str:
    """The sentence a user reads for one pydantic error; pydantic's own wording as a fallback."""
    kind = error["type"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        known = known_keys(model, error["loc"][:-1])
        hint = closest(str(error["loc"][-1]), known) or f"; known keys: {', '.join(known)}"
        return "unknown key" + (hint if known else "")
    if kind == "string_type":
        return f"must be a string; put quotes around the {'key' if error['loc'][-1] == '[key]' else 'value'}"
    if kind in ("dict_type", "model_type"):
        return "must be a mapping of key: value"
    if kind == "bool_type":
        return "must be true or false"
    return error["msg"].replace("Input should be", "must be")


def known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed in the mapping at `loc` (aliases as written in YAML)."""
    for part in loc:
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        options = (field.annotation, *get_args(field.annotation)) if field else ()  # unwraps `X | None`
        nested = [o for o in options if isinstance(o, type) and issubclass(o, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return [field.alias or name for name, field in model.model_fields.items()]
