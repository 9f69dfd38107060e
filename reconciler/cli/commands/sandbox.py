"""`reconciler sandbox`: run the stand-in Batch/Files API server until SIGINT or SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import click
from pydantic import ValidationError

from reconciler.cli.options import Seconds, repo_root_option
from reconciler.common.errors import UserError
from reconciler.sandbox import SandboxConfig, start_sandbox
from reconciler.sandbox.config import START_FAILURES, describe
from reconciler.specs.repo import RepoPaths

API_KEY_ENV = "RECONCILER_SANDBOX_API_KEY"
WEBHOOK_SECRET_ENV = "RECONCILER_SANDBOX_WEBHOOK_SECRET"
_TYPES: dict[str, Any] = {
    "api_key": str,
    "seed": int,
    "webhook_url": str,
    "webhook_secret": str,
    "webhook_attempts": int,
    "start_failure": click.Choice(START_FAILURES),
}


class JsonObject(click.ParamType[dict[str, Any]]):
    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            found = json.loads(value) if isinstance(value, str) else value
        except ValueError:
            self.fail('is not JSON; write an object, e.g. \'{"gpt-4o-mini": {"enqueued_tokens": 5000}}\'')
        if not isinstance(found, dict):
            self.fail("must be a JSON object")
        return found


_TYPES["limits"] = JsonObject()
_ENV = {"api_key": API_KEY_ENV, "webhook_secret": WEBHOOK_SECRET_ENV}


def _knob_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """One flag per SandboxConfig knob, documented from the model itself."""
    for name, field in reversed(SandboxConfig.model_fields.items()):
        default = "unset" if field.default is None or field.default_factory else field.default
        help_text = f"{field.description} [default: {default}]"
        extra: dict[str, Any] = {}
        if name in _ENV:
            help_text += f" Also read from ${_ENV[name]}."
            extra = {"envvar": _ENV[name], "show_envvar": False}
        flag = "--" + name.replace("_", "-")
        kind = _TYPES.get(name, Seconds() if name.endswith("_seconds") else float)
        func = click.option(flag, name, type=kind, help=help_text, **extra)(func)
    return func


@click.command(name="sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0 picks a free port."
)
@click.option(
    "--data", metavar="DIR", help="Where batches and files live [default: <repo>/.reconciler/sandbox]."
)
@_knob_options
@repo_root_option  # innermost: it replaces the function, which would drop the options above it
def command(paths: RepoPaths, host: str, port: int, data: str | None, **knobs: Any) -> int:
    """Run the sandbox Batch/Files API server (the built-in provider) until interrupted.

    Prints one line with its base URL once it accepts connections; exits 0 on SIGINT/SIGTERM.
    """
    config = _config({name: value for name, value in knobs.items() if value is not None})
    data_dir = Path(data).resolve() if data else paths.sandbox_data
    try:
        sandbox = start_sandbox(data_dir, config, host=host, port=port)
    except OSError as error:
        raise UserError(f"sandbox: cannot listen on {host}:{port}: {error.strerror or error}") from None
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, _setter(stopping)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo(f"sandbox listening on {sandbox.base_url} (data: {data_dir})")
        while not stopping.wait(0.5):
            pass
    finally:
        sandbox.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _config(knobs: dict[str, Any]) -> SandboxConfig:
    for name, value in knobs.items():  # one at a time, so the message names the flag
        try:
            SandboxConfig.model_validate({name: value})
        except ValidationError as error:
            problem = describe(error).split(": ", 1)[-1]
            raise UserError(f"--{name.replace('_', '-')}: {problem}") from None
    return SandboxConfig.model_validate(knobs)


def _setter(event: threading.Event) -> Callable[[int, FrameType | None], None]:
    def handle(signum: int, frame: FrameType | None) -> None:
        event.set()

    return handle
