"""Repo-wide settings in reconciler.yaml beyond the owner id (identity.py reads that): the budget.

Only the keys read here are checked; a typo inside `budget:` is an error, like in a spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reconciler.common.errors import Problem, SpecError
from reconciler.specs.settings_file import read_settings


class PlanBudget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    max_usd_per_plan: Annotated[float, Field(gt=0)]
    """What one plan may launch at most, in USD (every job's estimate added up)."""


def read_budget(repo: Path) -> PlanBudget | None:
    """`budget:` in reconciler.yaml at the repo root, or None when there is none."""
    found = read_settings(repo, _not_yaml)
    budget = found.data.get("budget") if found else None
    if found is None or budget is None:
        return None
    path, text = found.path, found.text
    try:
        return PlanBudget.model_validate(budget)
    except ValidationError as error:
        problems = [
            Problem(str(path), _line_of(text, "budget"), ".".join(["budget", *map(str, e["loc"])]), e["msg"])
            for e in error.errors()
        ]
        raise SpecError(problems) from None


def _not_yaml(path: Path, problem: str) -> SpecError:
    return SpecError([Problem(str(path), None, "", problem)])


def _line_of(text: str, key: str) -> int | None:
    """The 1-based line of a top-level key, for the error message."""
    root = yaml.compose(text)
    if isinstance(root, yaml.MappingNode):
        for name, value in root.value:
            if name.value == key:
                return int(value.start_mark.line) + 1
    return None
