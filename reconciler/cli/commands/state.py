"""`reconciler state history` and `reconciler state show SERIAL`: the kept versions of the state;
`reconciler state forget-limit PROVIDER MODEL`: a queue limit learnt from refusals, forgotten.

A PostgreSQL state keeps every serial; a state file keeps its latest and one backup.
"""

from __future__ import annotations

import json

import click

from reconciler.cli.options import owner_option, repo_options
from reconciler.common.errors import UserError
from reconciler.engine.workspace import open_recorded
from reconciler.specs.repo import RepoPaths


@click.group()
def command() -> None:
    """The state's kept versions: list them, or print one."""


@command.command()
@repo_options
@owner_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="Newest versions shown.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def history(paths: RepoPaths, owner: str | None, limit: int, as_json: bool) -> int:
    """List the kept serials of the state, newest first: when, by whom, how many jobs."""
    with open_recorded(paths, owner) as backend:
        versions, where = backend.history(limit), backend.where
    if as_json:
        rows = [vars(v) for v in versions]
        click.echo(json.dumps({"state": where, "versions": rows}, indent=2, sort_keys=True))
        return 0
    if not versions:
        click.echo(f"No state written yet in {where}.")
        return 0
    click.echo(f"{'SERIAL':>6}  {'WRITTEN':<20}  {'JOBS':>4}  LINEAGE   BY")
    for v in versions:
        by = v.written_by or "-"
        click.echo(f"{v.serial:>6}  {v.written_at or '-':<20}  {v.jobs:>4}  {v.lineage[:8]}  {by}")
    return 0


@command.command()
@repo_options
@owner_option
@click.argument("serial", type=click.IntRange(1))
def show(paths: RepoPaths, owner: str | None, serial: int) -> int:
    """Print the state as written at SERIAL (the same JSON as the state file)."""
    with open_recorded(paths, owner) as backend:
        state = backend.version(serial)
    click.echo(json.dumps(state.model_dump(mode="json"), indent=2, sort_keys=True))
    return 0


@command.command(name="forget-limit")
@repo_options
@owner_option
@click.argument("provider")
@click.argument("model")
def forget_limit(paths: RepoPaths, owner: str | None, provider: str, model: str) -> int:
    """Forget the queue limit learnt for MODEL at PROVIDER (and any lowering after a refusal):
    the next pass admits without it until a refusal teaches it again."""
    with open_recorded(paths, owner) as backend, backend.writer_lock("reconciler state forget-limit"):
        state = backend.read()
        learnt = {name: dict(models) for name, models in state.queue.learnt.items()}
        if learnt.get(provider, {}).pop(model, None) is None:
            known = [f"{p} {m}" for p, models in sorted(learnt.items()) for m in sorted(models)]
            raise UserError(
                f"no queue limit learnt for {model} at {provider}; learnt: {', '.join(known) or 'none'}"
            )
        learnt = {name: models for name, models in learnt.items() if models}
        backend.write(state.model_copy(update={"queue": state.queue.model_copy(update={"learnt": learnt})}))
    click.echo(f"Forgot the queue limit learnt for {model} at {provider}.")
    return 0
