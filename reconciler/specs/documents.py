"""One spec file's YAML documents, each validated into a BatchJob, Provider or Notification."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from reconciler.common.errors import Problem
from reconciler.specs.messages import closest, error_message
from reconciler.specs.models import KINDS, BatchJob, Notification, Provider
from reconciler.specs.yamlsource import Loc, locate, parse_yaml

# The fields a problem found after validation points at (a name used twice, a provider or an
# input that is not there, results that clash): their places are kept, the YAML nodes are not
# (they were most of the memory: 12 KB a spec, 120 MB at 10,000 specs).
PLACES: tuple[Loc, ...] = (("metadata", "name"), ("spec", "provider"), ("spec", "input"), ("spec", "results"))


@dataclass(frozen=True)
class Document:
    source: Path
    display: str
    line: int  # where the document starts
    places: Mapping[Loc, tuple[int, str]]  # PLACES → (line, field as written)
    model: BatchJob | Provider | Notification

    @property
    def name_line(self) -> int:
        return self.places[("metadata", "name")][0]

    def problem(self, loc: Loc, message: str) -> Problem:
        line, label = self.places.get(loc, (self.line, ".".join(str(part) for part in loc)))
        return Problem(self.display, line, label, message)


def read_documents(path: Path, shown: str) -> tuple[list[Document], list[Problem]]:
    """The valid documents of one file (empty ones skipped) and the problems found."""
    documents: list[Document] = []
    parsed, problems = parse_yaml(path, shown)
    for node, data in parsed:
        if data is None:
            continue
        model, trouble = _validate(data, node, shown)
        problems += trouble
        if model is not None:
            places = {loc: locate(node, loc) for loc in PLACES}
            documents.append(Document(path, shown, node.start_mark.line + 1, places, model))
    return documents, problems


def _validate(
    data: object, node: yaml.Node, shown: str
) -> tuple[BatchJob | Provider | Notification | None, list[Problem]]:
    """The document as a model, or the problems keeping it from being one."""
    if not isinstance(data, dict):
        message = "a document must be a mapping with apiVersion, kind, metadata and spec"
        return None, [Problem(shown, locate(node, ())[0], "", message)]
    kind = data.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        return None, [Problem(shown, *locate(node, ("kind",)), _kind_problem(kind))]
    try:
        return model.model_validate(data), []
    except ValidationError as error:
        return None, [
            Problem(shown, *locate(node, e["loc"]), error_message(e, model)) for e in error.errors()
        ]


def _kind_problem(kind: object) -> str:
    choices = list(KINDS)
    if kind is None:
        return f"required: one of {', '.join(choices)}"
    hint = closest(str(kind), choices) or f"; use one of {', '.join(choices)}"
    return f"unknown kind {str(kind)[:60]!r}{hint}"
