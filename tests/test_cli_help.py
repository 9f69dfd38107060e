"""`reconciler --help` lists every command without importing any of them."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from reconciler.cli.main import COMMANDS, cli, one_shot, summary


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_help_line_read_from_source_is_clicks_own_short_help(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    assert summary(name, 60) == command.get_short_help_str(limit=60)


def test_help_imports_no_command_module_and_none_of_httpx_or_pydantic() -> None:
    probe = (
        "import sys; from reconciler.cli.main import main\n"
        "try: main(['--help'])\n"
        "except SystemExit: pass\n"
        "loaded = [m for m in sys.modules if m.startswith(('reconciler.cli.commands.', 'httpx', 'pydantic'))]\n"
        "print(','.join(sorted(loaded)), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stderr.strip() == ""
    assert all(name in done.stdout for name in COMMANDS)


@pytest.mark.parametrize("name", ["validate", "plan", "apply", "reconcile"])
def test_a_one_shot_command_loads_no_terminal_drawing_daemon_or_sandbox(name: str) -> None:
    """rich (httpx's own command-line tool pulls it in), the daemon and the sandbox are not what
    a command needs before its first request: each was tens of milliseconds of its start."""
    probe = (
        "import sys; from reconciler.cli.main import main\n"
        f"try: main([{name!r}, '--help'])\n"
        "except SystemExit: pass\n"
        "heavy = ('rich', 'pygments', 'httpx._main', 'reconciler.daemon', 'reconciler.sandbox')\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith(heavy) and sys.modules[m])), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stderr.strip() == ""
    assert "Usage:" in done.stdout


@pytest.mark.parametrize(
    "argv, once",
    [
        (["plan", "--repo", "x"], True),
        (["status", "--json"], True),
        (["reconcile"], True),
        (["reconcile", "--wait"], False),
        (["reconcile", "--repo", "plan", "--watch"], False),
        (["sandbox", "--port", "0"], False),
        (["--help"], False),
    ],
)
def test_only_a_command_that_does_one_pass_runs_without_the_cyclic_collector(
    argv: list[str], once: bool
) -> None:
    assert one_shot(argv) is once
