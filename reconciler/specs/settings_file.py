"""`reconciler.yaml` at the repo root, read one way for every key in it (owner, state, budget):
YAML 1.2 booleans, as every file the tool reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reconciler.specs.yamlsource import load_yaml

SETTINGS_FILE = "reconciler.yaml"


@dataclass(frozen=True)
class SettingsFile:
    path: Path
    text: str
    data: dict[str, Any]  # {} when the document is not a mapping


# Makes the error a key's reader raises (each has its own kind) from the file and the problem.
Fail = Callable[[Path, str], Exception]


def read_settings(repo: Path, fail: Fail) -> SettingsFile | None:
    """The settings file, or None when there is none."""
    path = repo / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        data = load_yaml(text)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise fail(path, f"not valid YAML ({error.__class__.__name__})") from None
    return SettingsFile(path, text, data if isinstance(data, dict) else {})


def string_setting(repo: Path, key: str, fail: Fail, wanted: str) -> str | None:
    """A top-level key that must be a string, when set; `wanted` says what it should be."""
    found = read_settings(repo, fail)
    value = found.data.get(key) if found else None
    if value is not None and not isinstance(value, str):
        assert found is not None
        raise fail(found.path, f"{key}: must be {wanted}")
    return value
