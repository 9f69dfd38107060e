"""`reconciler schema`: the JSON Schema editors use, and the copy committed under schema/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema

from reconciler.cli.commands.schema import render
from reconciler.specs.fields import ALLOWED_ENDPOINTS
from tests.fixtures.repo import RunCli

ROOT = Path(__file__).resolve().parent.parent
RunCli = RunCli


def test_schema_covers_every_kind_chosen_by_kind(run_cli: RunCli) -> None:
    result = run_cli("schema")
    schema = json.loads(result.stdout)
    assert result.exit_code == 0
    assert schema["discriminator"]["propertyName"] == "kind"
    assert sorted(schema["discriminator"]["mapping"]) == ["BatchJob", "Notification", "Provider"]
    spec = schema["$defs"]["BatchJobSpec"]
    assert spec["additionalProperties"] is False
    assert spec["properties"]["endpoint"]["enum"] == list(ALLOWED_ENDPOINTS)
    assert sorted(spec["required"]) == ["endpoint", "input"]
    assert spec["properties"]["metadata"]["maxProperties"] == 8


def test_schema_of_one_kind(run_cli: RunCli) -> None:
    schema = json.loads(run_cli("schema", "--kind", "Provider").stdout)
    assert schema["title"] == "Provider"
    assert schema["properties"]["kind"]["const"] == "Provider"
    assert schema["$defs"]["ProviderSpec"]["required"] == ["base_url"]


def test_an_unknown_kind_is_a_usage_error(run_cli: RunCli) -> None:
    result = run_cli("schema", "--kind", "Job")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "Job" in result.stderr


def test_the_committed_schema_is_up_to_date() -> None:
    committed = (ROOT / "schema" / "reconciler-v1.schema.json").read_text(encoding="utf-8")
    assert committed == render(), "regenerate: python -m reconciler schema > schema/reconciler-v1.schema.json"


def test_every_sample_spec_points_editors_at_the_schema() -> None:
    for spec in sorted((ROOT / "specs").rglob("*.yaml")):
        first_line = spec.read_text(encoding="utf-8").splitlines()[0]
        match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first_line)
        assert match, f"{spec} lacks the yaml-language-server header"
        assert (spec.parent / match.group(1)).resolve() == ROOT / "schema" / "reconciler-v1.schema.json"


def test_the_schema_takes_a_schedule_macro_and_five_fields_and_flags_a_misspelt_macro() -> None:
    schema = json.loads(render())
    validator = jsonschema.Draft202012Validator(schema)

    def job(schedule: str) -> dict[str, object]:
        spec = {"endpoint": "/v1/chat/completions", "input": "../data/n.jsonl", "schedule": schedule}
        return {"apiVersion": "reconciler/v1", "kind": "BatchJob", "metadata": {"name": "n"}, "spec": spec}

    for good in ("@daily", "@hourly", "@annually", "0 2 * * *", "*/15 9-17 * * MON-FRI"):
        assert not list(validator.iter_errors(job(good))), good
    for bad in ("@dayly", "@every 1h", "0 2 * *"):
        assert list(validator.iter_errors(job(bad))), bad
