"""One spec file's YAML documents, each validated into a BatchJob, Provider or Notification."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from reconciler.common.errors import Problem
from reconciler.specs.messages import closest, error_message
from reconciler.specs.models import KINDS, BatchJob, Notification, Provider
from reconciler.specs.yamlsource import Loc, locate, parse_yaml


@dataclass(frozen=True)
class Document:
    source: Path
    display: str
    node: yaml.Node
    model: BatchJob | Provider | Notification

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    @property
    def name_line(self) -> int:
        return locate(self.node, ("metadata", "name"))[0]

    def problem(self, loc: Loc, message: str) -> Problem:
        return Problem(self.display, *locate(self.node, loc), message)


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
            documents.append(Document(path, shown, node, model))
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
