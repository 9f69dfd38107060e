"""`reconciler schema`: the JSON Schema of the spec documents, for editors and CI linters."""

from __future__ import annotations

import json
from typing import Annotated, Any

import click
from pydantic import Field, TypeAdapter

from reconciler.specs.models import API_VERSION, KINDS, BatchJob, Notification, Provider

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(kind: str | None = None) -> dict[str, Any]:
    """One kind's schema, or (no kind) one schema accepting either, chosen by `kind`."""
    if kind is not None:
        schema = KINDS[kind].model_json_schema(by_alias=True)
    else:
        either = TypeAdapter(Annotated[BatchJob | Provider | Notification, Field(discriminator="kind")])
        schema = either.json_schema(by_alias=True)
        schema["title"] = f"{API_VERSION} document (BatchJob, Provider or Notification)"
    return {"$schema": SCHEMA_DIALECT, **schema}


def render(kind: str | None = None) -> str:
    """The schema as printed, and as committed under schema/."""
    return json.dumps(json_schema(kind), indent=2) + "\n"


@click.command()
@click.option(
    "--kind",
    type=click.Choice(sorted(KINDS)),
    help="Only this kind's schema [default: one schema accepting every kind].",
)
def command(kind: str | None) -> int:
    """Print the JSON Schema of BatchJob, Provider and Notification documents.

    Keep a copy in your repo (`reconciler schema > schema/reconciler-v1.schema.json`;
    `reconciler init` writes one) and point yaml-language-server at it from a spec's first
    line, relative to the spec: `# yaml-language-server: $schema=../schema/reconciler-v1.schema.json`.
    """
    click.echo(render(kind), nl=False)
    return 0
