"""The manual (docs/, built by `mkdocs build --strict` in .ci/run) and the README that leads to it:
reference pages generated from the code, every metric documented, a short landing README, and
no page naming the project's internal issue numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from reconciler.cli.main import COMMANDS, cli
from reconciler.cli.reference import PAGES
from reconciler.daemon.board import Metrics

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def _page(name: str) -> str:
    return (DOCS / "reference" / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(PAGES))
def test_the_generated_reference_page_is_what_the_code_generates(name: str) -> None:
    assert _page(name) == PAGES[name](), "regenerate: python -m reconciler.cli.reference"


def test_the_commands_page_has_every_command_and_every_option() -> None:
    page = _page("commands.md")
    ctx = click.Context(cli, info_name="reconciler")
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None
        named = command.commands if isinstance(command, click.Group) else {"": command}
        for sub, each in named.items():
            assert f"\n## {' '.join(['reconciler', name, sub]).strip()}\n" in page, (name, sub)
            for option in (p for p in each.params if isinstance(p, click.Option)):
                assert re.search(rf"<code>([^<]*, )?{re.escape(option.opts[-1])}[ <]", page), option.opts


def test_the_spec_fields_page_has_every_field_of_the_committed_schema() -> None:
    page = _page("spec-fields.md")
    schema = json.loads((ROOT / "schema" / "reconciler-v1.schema.json").read_text(encoding="utf-8"))
    for kind in ("BatchJobSpec", "ProviderSpec", "NotificationSpec"):
        for field in schema["$defs"][kind]["properties"]:
            assert f"| `spec.{field}` |" in page, (kind, field)
    for field in schema["$defs"]["RetrySpec"]["properties"]:
        assert f"| `spec.retry.{field}` |" in page


def test_every_metric_the_daemon_exports_is_in_the_metrics_reference() -> None:
    documented = (DOCS / "reference" / "metrics.md").read_text(encoding="utf-8")
    exported = {family.name for family in Metrics().registry.collect()}  # a counter's without _total
    assert len(exported) >= 10
    for name in exported:
        assert re.search(rf"^\| `{name}(_total)?[{{`]", documented, re.MULTILINE), name


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _nav_pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return [page for item in nav for page in _nav_pages(item)]


def test_every_page_of_the_manual_is_in_its_navigation() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert sorted(_nav_pages(config["nav"])) == sorted(p.relative_to(DOCS).as_posix() for p in _pages())


def test_the_readme_is_a_landing_page_whose_first_commands_are_the_quickstart_and_ci() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"^```(?:sh|console)\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert len(text.splitlines()) <= 250
    assert blocks[:2] == [
        "python3 -m venv .venv && . .venv/bin/activate && pip install . && reconciler reconcile --wait && reconciler status\n",
        "bash .ci/run\n",
    ]
    linked = set(re.findall(r"\]\((docs/[^)#]+)", text))
    assert {"docs/getting-started.md", "docs/reference/commands.md", "docs/guides/ci.md"} <= linked


@pytest.mark.parametrize(
    "document",
    [README, ROOT / "CHANGELOG.md", *_pages()],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_no_page_names_an_internal_issue_number(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    # another project's issue (Portkey-AI/gateway#1389) is a reference; ours are not for users
    found = re.findall(r"\b[Ii]ssues? \d+|(?<![\w/&-])#\d+\b|\bissue-\d+", text)
    assert not found
