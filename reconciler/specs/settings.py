"""`reconciler.yaml` at the repo root: one model for the whole file, read once per command.

Its keys are `owner` (identity.py), `state` (state_location.py) and `budget`.  Like a spec, an
unknown or mistyped key is an error with its file, line and a "did you mean", never ignored:
`budgte:` must not switch the repo's budget off without a word.  YAML 1.2 booleans, as every
file the tool reads.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from reconciler.common.errors import Problem, SpecError
from reconciler.specs.messages import error_message, known_keys
from reconciler.specs.yamlsource import locate, parse_yaml

SETTINGS_FILE = "reconciler.yaml"


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True)


class PlanBudget(_Settings):
    max_usd_per_plan: Annotated[float, Field(gt=0)]
    """What one plan may launch at most, in USD: changes are admitted in plan order while they fit."""


class RepoSettings(_Settings):
    owner: str | None = None
    """The owner id stamped on every batch of this repo (after --owner and $RECONCILER_OWNER)."""
    state: str | None = None
    """A postgresql:// URL (no password) to keep the state in, instead of the state file."""
    budget: PlanBudget | None = None
    """Budgets over a whole plan."""


def read_settings(repo: Path) -> RepoSettings:
    """The settings in `repo`/reconciler.yaml; none set when there is no such file.

    Every problem at once, each as `reconciler.yaml:LINE: field: what to do`."""
    path = repo / SETTINGS_FILE
    if not path.is_file():
        return RepoSettings()
    parsed, problems = parse_yaml(path, SETTINGS_FILE)
    if problems:
        raise SpecError(problems)
    documents = [(node, data) for node, data in parsed if data is not None]
    if not documents:
        return RepoSettings()
    if len(documents) > 1:
        line = documents[1][0].start_mark.line + 1
        raise SpecError([Problem(SETTINGS_FILE, line, "", "one document only; remove the second one")])
    node, data = documents[0]
    if not isinstance(data, dict):
        message = "must be a mapping of settings: owner, state, budget"
        raise SpecError([Problem(SETTINGS_FILE, locate(node, ())[0], "", message)])
    try:
        return RepoSettings.model_validate(data)
    except ValidationError as error:
        raise SpecError(
            [
                Problem(SETTINGS_FILE, *locate(node, e["loc"]), error_message(e, RepoSettings))
                for e in _worth_saying(error.errors())
            ]
        ) from None


def _worth_saying(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Without `required` for a key that a misspelt one beside it is said to mean: the "did you
    mean" line already tells the user what to write."""
    meant = {
        (*e["loc"][:-1], match[0])
        for e in errors
        if e["type"] == "extra_forbidden"
        and (
            match := difflib.get_close_matches(
                str(e["loc"][-1]), known_keys(RepoSettings, e["loc"][:-1]), 1, 0.6
            )
        )
    }
    return [e for e in errors if not (e["type"] == "missing" and tuple(e["loc"]) in meant)]


def read_budget(repo: Path) -> PlanBudget | None:
    """`budget:` in reconciler.yaml, or None when it sets none."""
    return read_settings(repo).budget
