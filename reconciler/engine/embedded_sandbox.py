"""The sandbox as the CLI's built-in provider: in-process, on a free loopback port.

Knobs may come from $RECONCILER_SANDBOX (a JSON object, e.g. '{"validation_seconds": 0.1}'),
so tests and demos that run the CLI as a subprocess can make its sandbox fast.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from reconciler.common.errors import UserError
from reconciler.sandbox.config import SandboxConfig
from reconciler.sandbox.server import Sandbox, start_sandbox

KNOBS_ENV = "RECONCILER_SANDBOX"


def embedded_config(environ: Mapping[str, str] | None = None) -> SandboxConfig:
    raw = (os.environ if environ is None else environ).get(KNOBS_ENV, "").strip()
    if not raw:
        return SandboxConfig()
    try:
        knobs = json.loads(raw)
    except ValueError:
        raise UserError(f"${KNOBS_ENV}: not valid JSON; expected an object of sandbox knobs") from None
    if not isinstance(knobs, dict):
        raise UserError(f"${KNOBS_ENV}: expected a JSON object of sandbox knobs")
    try:
        return SandboxConfig().changed(**knobs)
    except ValueError as error:
        raise UserError(f"${KNOBS_ENV}: {error}") from None


@contextlib.contextmanager
def embedded_sandbox(data_dir: Path, environ: Mapping[str, str] | None = None) -> Iterator[Sandbox]:
    """A sandbox for the duration of one command; its batches keep progressing on disk after."""
    with start_sandbox(data_dir, embedded_config(environ)) as sandbox:
        yield sandbox
