"""The thin click layer: one lazily loaded module per command, one error boundary."""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import logging
import sys
from collections.abc import Iterator
from typing import Any

import click

from reconciler import DISTRIBUTION
from reconciler.common.errors import ReconcilerError

# name -> module in reconciler.cli.commands exposing `command: click.Command`
COMMANDS = {
    "init": "init",
    "validate": "validate",
    "schema": "schema",
    "plan": "plan",
    "apply": "apply",
    "reconcile": "reconcile",
    "status": "status",
    "output": "output",
    "state": "state",
    "sandbox": "sandbox",
}


class LazyGroup(click.Group):
    """Imports a command's module only when it runs, so `--help` and `status` stay fast.

    `--help` lists each command with the first line of its docstring, read from the module's
    source instead of importing it (a test keeps that line equal to click's own short help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, summary(name, limit)) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        _without_httpx_cli()
        module = importlib.import_module(f"reconciler.cli.commands.{module_name}")
        command: click.Command = module.command
        return command


def _without_httpx_cli() -> None:
    """httpx imports its own command-line tool whenever rich and pygments are installed (they
    are: `reconcile --wait` draws with rich), ~40 ms of every command's start for a tool we never
    run.  A None entry makes that import fail, and httpx then goes without it (its __init__
    allows for the tool being absent).  Only the CLI does it: importing reconciler does not."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def summary(name: str, limit: int = 45) -> str:
    """A command's short help, from its `command` function's docstring, without importing it."""
    import ast  # only `--help` reads a docstring so

    spec = importlib.util.find_spec(f"reconciler.cli.commands.{COMMANDS[name]}")
    source = spec.loader.get_source(spec.name) if spec and spec.loader else None  # type: ignore[attr-defined]
    tree = ast.parse(source or "")
    function = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "command"), None)
    text = ast.get_docstring(function) if function else None
    return click.Command(name, help=text).get_short_help_str(limit)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION, prog_name="reconciler")
def cli() -> None:
    """GitOps for LLM batch jobs: make the provider's live batches match the specs in git."""


class _WarningLine(logging.Handler):
    """A warning from below the CLI (the API skipping a foreign batch) as one `warning:` line."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {record.getMessage()}", err=True)


def _show_warnings() -> None:
    logger = logging.getLogger("reconciler")
    logger.propagate = False
    if not any(isinstance(h, _WarningLine) for h in logger.handlers):
        logger.addHandler(_WarningLine(logging.WARNING))


# Commands that do one pass and exit, unless told to keep going.
ONE_SHOT = frozenset({"validate", "plan", "apply", "reconcile", "status", "output"})
KEEP_GOING = frozenset({"--watch", "--wait"})


def one_shot(argv: list[str]) -> bool:
    """`reconciler plan …`, not `reconciler reconcile --watch`: the group itself takes no option
    with a value, so its first word is the command."""
    words = [arg for arg in argv if not arg.startswith("-")]
    return bool(words) and words[0] in ONE_SHOT and not KEEP_GOING.intersection(argv)


@contextlib.contextmanager
def collector_paused(paused: bool) -> Iterator[None]:
    """Python's cyclic collector rescans every object a pass holds (specs, the state, the live
    list: millions at 10,000 jobs) each time the heap grows by a quarter, for garbage a pass
    hardly makes: a quarter of the CPU of a plan over 10,000 jobs.  A one-shot command runs
    without it (what cycles it leaves go when it exits); the daemon and `--wait` keep it."""
    was_enabled = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def main(argv: list[str] | None = None) -> Any:
    _show_warnings()
    try:
        with collector_paused(one_shot(sys.argv[1:] if argv is None else argv)):
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
