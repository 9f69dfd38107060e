"""The thin click layer: one lazily loaded module per command, one error boundary."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from reconciler.common.errors import ReconcilerError

# name -> module in reconciler.cli.commands exposing `command: click.Command`
COMMANDS = {
    "validate": "validate",
    "schema": "schema",
    "plan": "plan",
    "apply": "apply",
    "reconcile": "reconcile",
    "status": "status",
    "state": "state",
    "sandbox": "sandbox",
}


class LazyGroup(click.Group):
    """Imports a command's module only when it runs, so `--help` and `status` stay fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"reconciler.cli.commands.{module_name}")
        command: click.Command = module.command
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reconciler")
def cli() -> None:
    """GitOps for LLM batch jobs: make the provider's live batches match the specs in git."""


def main(argv: list[str] | None = None) -> Any:
    try:
        result = cli.main(args=argv, prog_name="reconciler", standalone_mode=False)
    except ReconcilerError as error:
        for line in error.lines():
            click.echo(f"error: {line}", err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as error:
        # Usage mistakes exit 1, not click's 2: `plan --detailed-exitcode` reserves 2 for "changes".
        click.echo(f"error: {error.format_message()}", err=True)
        sys.exit(1)
    # Commands return their exit code (plan's 2 for "changes"); standalone_mode=False hands it back.
    sys.exit(result if isinstance(result, int) else 0)
