"""Every YAML block in the README and the manual (docs/), and every YAML file and block under
examples/, validated verbatim (a block that includes an example file, `--8<-- "path"`, as that file): reconciler documents by `reconciler validate`, the rest (Kubernetes, GitHub Actions,
pre-commit) read as the tool reads YAML (1.2 booleans) and checked for their own shape."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.specs.identity import resolve_owner
from reconciler.specs.repo import read_budget, resolve_state_url
from reconciler.specs.yamlsource import SafeLoader12
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
    *sorted((ROOT / "examples").rglob("*.md")),
]
FILES = sorted(p for p in (ROOT / "examples").rglob("*") if p.suffix in (".yaml", ".yml"))
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.MULTILINE)  # pymdownx.snippets, paths from the root
FRAGMENT_HEADER = "apiVersion: reconciler/v1\nkind: BatchJob\nmetadata:\n  name: fragment\n"
FRAGMENT_REQUIRED = "  endpoint: /v1/chat/completions\n  input: ../data/fragment.jsonl\n"


def _blocks() -> list[tuple[str, str]]:
    found = []
    for path in MARKDOWN:
        text = path.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            line = text[: match.start()].count("\n") + 1
            block = _SNIPPET.sub(lambda m: (ROOT / m.group(1)).read_text(encoding="utf-8"), match.group(1))
            found.append((f"{path.relative_to(ROOT)}:{line}", block))
    found += [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in FILES]
    return found


BLOCKS = _blocks()


def _documents(text: str) -> list[Any]:
    return [d for d in yaml.load_all(text, Loader=SafeLoader12) if d is not None]


def _is_ours(document: Any) -> bool:
    return isinstance(document, dict) and document.get("apiVersion") == "reconciler/v1"


def _is_fragment(document: Any) -> bool:
    return isinstance(document, dict) and set(document) == {"spec"}


def test_the_docs_hold_the_yaml_this_test_is_meant_to_see() -> None:
    names = [name for name, _ in BLOCKS]
    assert sum(name.startswith("docs/") for name in names) >= 12
    assert any(name.startswith("docs/guides/ci.md") and "jobs:" in text for name, text in BLOCKS)  # a snippet
    assert any("Runs and schedules" in t or "schedule:" in t for _, t in BLOCKS)
    assert "examples/github-actions/reconciler.yml" in names


@pytest.mark.parametrize(("where", "text"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_every_yaml_block_and_example_validates_verbatim(
    where: str, text: str, make_repo: MakeRepo, run_cli: RunCli, tmp_path: Path
) -> None:
    documents = _documents(text)
    assert documents, f"{where}: no YAML document"
    if all(_is_ours(d) for d in documents):
        _validate(make_repo(), text, documents, run_cli, where)
    elif len(documents) == 1 and _is_fragment(documents[0]):
        # A `spec:` fragment: placed unchanged inside a job that has what it leaves out.
        whole = FRAGMENT_HEADER + text.replace("spec:\n", "spec:\n" + FRAGMENT_REQUIRED, 1)
        _validate(make_repo(), whole, _documents(whole), run_cli, where)
    else:
        for document in documents:
            _check_foreign(document, where, tmp_path)


def _validate(repo: UserRepo, text: str, documents: list[Any], run_cli: RunCli, where: str) -> None:
    spec = repo.write_spec("specs/block.yaml", "")
    spec.write_text(text, encoding="utf-8")  # verbatim, not dedented
    for document in documents:
        if document.get("kind") == "BatchJob":
            endpoint = document["spec"]["endpoint"]
            repo.write_input((spec.parent / document["spec"]["input"]).resolve(), 3, endpoint=endpoint)
    result = run_cli("validate", *repo.args())
    assert result.exit_code == 0, f"{where}: {result.stderr}"


SETTINGS_KEYS = {"owner", "budget", "state"}


def _check_settings(document: dict[str, Any], where: str, settings: Path) -> None:
    (settings / "reconciler.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    if "budget" in document:
        assert read_budget(settings) is not None, where
    if "owner" in document:
        assert resolve_owner(settings) == document["owner"], where
    if "state" in document:
        assert resolve_state_url(settings, None, None) == document["state"], where


def _check_foreign(document: Any, where: str, scratch: Path) -> None:
    """Kubernetes objects, a GitHub workflow, a pre-commit config: read with YAML 1.2 booleans."""
    assert isinstance(document, dict), where
    if "jobs" in document:  # a GitHub Actions workflow: `on` is its trigger key, a string
        assert "on" in document and True not in document, where
    elif "repos" in document:
        assert all(isinstance(r.get("hooks"), list) for r in document["repos"]), where
    elif set(document) <= SETTINGS_KEYS:  # reconciler.yaml, read as the tool reads it
        _check_settings(document, where, scratch)
    else:
        assert isinstance(document.get("apiVersion"), str) and isinstance(document.get("kind"), str), where


JOB_WITH = """
    apiVersion: reconciler/v1
    kind: BatchJob
    metadata:
      name: job
    spec:
      endpoint: /v1/chat/completions
      input: ../data/job.jsonl
      {extra}
    """


def test_a_retry_with_the_key_on_unquoted_validates(make_repo: MakeRepo, run_cli: RunCli) -> None:
    repo = make_repo()
    repo.write_spec("specs/job.yaml", JOB_WITH.format(extra="retry: {max_attempts: 3, on: [batch_expired]}"))
    repo.write_input("data/job.jsonl", 2)
    result = run_cli("validate", *repo.args())
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n"])
def test_yaml_1_1_boolean_words_are_strings_not_booleans(
    word: str, make_repo: MakeRepo, run_cli: RunCli
) -> None:
    repo = make_repo()
    repo.write_spec("specs/job.yaml", JOB_WITH.format(extra=f"suspend: {word}"))
    repo.write_input("data/job.jsonl", 2)
    result = run_cli("validate", *repo.args())
    assert result.exit_code == 1 and "specs/job.yaml:8: spec.suspend:" in result.stderr


def test_true_and_false_are_booleans_in_specs_and_in_reconciler_yaml(
    make_repo: MakeRepo, run_cli: RunCli
) -> None:
    repo = make_repo()
    repo.write_spec("specs/job.yaml", JOB_WITH.format(extra="suspend: true"))
    repo.write_input("data/job.jsonl", 2)
    assert run_cli("validate", *repo.args()).exit_code == 0
    (repo.root / "reconciler.yaml").write_text("owner: yes\n")  # YAML 1.1 would make it a boolean
    result = run_cli("plan", *repo.args())
    assert "owner: must be a string" not in result.stderr and result.exit_code == 0, result.stderr
