"""A faithful stand-in for the OpenAI-compatible Batch and Files API, on disk and on loopback.

    with start_sandbox(tmp_path, SandboxConfig(validation_seconds=0.1)) as sandbox:
        client = openai.OpenAI(base_url=sandbox.base_url, api_key="x")

Module map: server (running it), handler (HTTP), app (knobs, counts, auth, faults), routes +
api_files + api_batches (endpoints), body + multipart (streaming request bodies), files +
batches (stores on disk), disk (atomic writes, locks, ids), lifecycle + views (status at a
moment), validation (input lines), results (output/error files), model* + rawjson (the tiny
model), embedded (the CLI's in-process sandbox, knobs from $RECONCILER_SANDBOX).
"""

from reconciler.sandbox.config import SandboxConfig
from reconciler.sandbox.server import Sandbox, start_sandbox

__all__ = ["Sandbox", "SandboxConfig", "start_sandbox"]
