"""Every example file, checked as far as this machine allows: the workflow against GitHub's
workflow schema, the Kubernetes manifests against Kubernetes' schemas, the systemd units with
`systemd-analyze verify`, the Dockerfile's build context against `.dockerignore`; links and
the environment-variable table of the manual against the code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import check_jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
VENDORED = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor"


def check_workflow(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with the GitHub workflow schema it ships (offline), reading YAML 1.2 as GitHub does."""
    command = [
        sys.executable,
        "-m",
        "check_jsonschema",
        "--builtin-schema",
        "vendor.github-workflows",
        str(path),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_the_actions_workflow_matches_the_github_workflow_schema() -> None:
    result = check_workflow(EXAMPLES / "github-actions" / "reconciler.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (VENDORED / "github-workflows.json").is_file()  # the schema is the vendored copy


def test_the_workflow_schema_check_would_catch_a_misspelt_key(tmp_path: Path) -> None:
    text = (EXAMPLES / "github-actions" / "reconciler.yml").read_text()
    assert text.count("runs-on:") == 2
    (tmp_path / "broken.yml").write_text(text.replace("runs-on:", "runs_on:", 1))
    assert check_workflow(tmp_path / "broken.yml").returncode != 0


def kubernetes_documents() -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for name in ("deployment.yaml", "config.yaml", "state-pvc.yaml", "replicas/deployment.yaml"):
        for document in yaml.safe_load_all((EXAMPLES / "kubernetes" / name).read_text()):
            found.append((f"{name}:{document['kind']}", document))
    return found


@pytest.mark.parametrize(
    ("where", "document"), kubernetes_documents(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_kubernetes_manifests_match_the_kubernetes_schemas_strictly(
    where: str, document: dict[str, Any]
) -> None:
    kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((EXAMPLES / "kubernetes" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        p.name for p in (EXAMPLES / "kubernetes").glob("*.yaml") if p.name != "kustomization.yaml"
    )


def test_liveness_checks_the_process_and_readiness_the_provider() -> None:
    deployment = yaml.safe_load((EXAMPLES / "kubernetes" / "deployment.yaml").read_text())
    reconciler = next(
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "reconciler"
    )
    assert reconciler["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert reconciler["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # A root holding the system's own units (for targets the examples name) and stand-ins for
    # the two programs they run, which are not installed here.
    (tmp_path / "lib" / "systemd").mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", tmp_path / "lib" / "systemd" / "system", symlinks=True)
    units = tmp_path / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for program in ("opt/reconciler/bin/reconciler", "usr/bin/git"):
        (tmp_path / program).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / program).write_text("#!/bin/sh\n")
        (tmp_path / program).chmod(0o755)
    names = sorted(p.name for p in (EXAMPLES / "systemd").iterdir() if p.suffix in (".service", ".timer"))
    for name in names:
        shutil.copy(EXAMPLES / "systemd" / name, units / name)
    result = subprocess.run(
        ["systemd-analyze", "verify", f"--root={tmp_path}", "--man=no", *[str(units / n) for n in names]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert len(names) == 3
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_systemd_install_steps_give_the_service_user_the_checkout_folder() -> None:
    readme = (EXAMPLES / "systemd" / "README.md").read_text()
    made = readme.index("install -d -o reconciler -g reconciler -m 0755 /srv/batch-jobs")
    assert made < readme.index("sudo -u reconciler git clone")
    assert "apt-get install -y python3-venv git" in readme


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """Docker's rules: patterns anchored at the context root, `*` within one path segment,
    `**` across segments, `!` re-includes; the last matching pattern wins; a pattern matching a
    folder matches everything in it."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip("/"))
        regex = "".join(
            ".*" if part == "**" else "[^/]*" if part == "*" else "[^/]" if part == "?" else re.escape(part)
            for part in re.split(r"(\*\*|\*|\?)", pattern)
        )
        rules.append((keep, re.compile(regex)))
    return rules


def in_context(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for keep, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = keep
    return included


@pytest.mark.slow
def test_the_docker_build_context_holds_only_the_package() -> None:
    rules = dockerignore_rules((ROOT / ".dockerignore").read_text())
    context = [
        path.relative_to(ROOT).as_posix()
        for path in ROOT.rglob("*")
        if path.is_file() and in_context(path.relative_to(ROOT).as_posix(), rules)
    ]
    assert "pyproject.toml" in context and "README.md" in context and "reconciler/cli/main.py" in context
    assert not [p for p in context if p.split("/")[0] not in ("pyproject.toml", "README.md", "reconciler")]
    assert not [p for p in context if "__pycache__" in p or p.endswith(".pyc")]
    assert sum((ROOT / p).stat().st_size for p in context) < 5_000_000


@pytest.mark.parametrize(
    "unwanted",
    [
        ".venv/lib/site.py",
        ".git/HEAD",
        ".reconciler/state.json",
        "tests/conftest.py",
        "reconciler/__pycache__/x.pyc",
    ],
)
def test_dockerignore_leaves_out_what_the_image_must_not_carry(unwanted: str) -> None:
    assert not in_context(unwanted, dockerignore_rules((ROOT / ".dockerignore").read_text()))


def test_every_file_the_dockerfile_copies_is_in_the_build_context() -> None:
    rules = dockerignore_rules((ROOT / ".dockerignore").read_text())
    dockerfile = (EXAMPLES / "kubernetes" / "Dockerfile").read_text()
    copies = [
        line.split()[1:-1]
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from" not in line
    ]
    sources = [source for sources in copies for source in sources]
    assert sources and all((ROOT / s).exists() and in_context(s, rules) for s in sources)
    assert "apt-get install -y --no-install-recommends git" in dockerfile


MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    docs = sorted((ROOT / "docs").rglob("*.md"))
    return [
        ROOT / "README.md",
        ROOT / "ARCHITECTURE.md",
        ROOT / "CHANGELOG.md",
        *docs,
        *sorted(EXAMPLES.rglob("*.md")),
    ]


def anchors(markdown: str) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def prose(markdown: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL))


@pytest.mark.parametrize("document", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_in_the_docs_leads_somewhere(document: Path) -> None:
    for target in MARKDOWN_LINK.findall(prose(document.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        assert linked.exists(), f"{document.name}: {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked.read_text()), f"{document.name}: {target}"


def test_the_manual_documents_every_environment_variable_the_code_reads() -> None:
    code = "\n".join(p.read_text() for p in (ROOT / "reconciler").rglob("*.py"))
    read = set(re.findall(r'"(RECONCILER_[A-Z_]+)"', code))
    section = (ROOT / "docs" / "reference" / "environment.md").read_text()
    assert read and {f"`{name}`" for name in read} <= set(re.findall(r"`RECONCILER_[A-Z_]+`", section))


def test_no_example_pins_a_release_tag_that_was_never_published() -> None:
    texts = [
        p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *EXAMPLES.rglob("*.y*ml")]
    ]
    assert not any(re.search(r"@v0\.1\.0|rev: v0\.1\.0", text) for text in texts)


@pytest.mark.slow
def test_bash_completion_offers_the_commands() -> None:
    env = {
        **os.environ,
        "_RECONCILER_COMPLETE": "bash_complete",
        "COMP_WORDS": "reconciler out",
        "COMP_CWORD": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "reconciler"], env=env, capture_output=True, text=True, timeout=60
    )
    assert "output" in result.stdout.split()[0].split(",") or "plain,output" in result.stdout
