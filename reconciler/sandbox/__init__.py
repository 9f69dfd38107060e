"""A faithful stand-in for the OpenAI-compatible Batch and Files API, on disk and on loopback.

    with start_sandbox(tmp_path, SandboxConfig(validation_seconds=0.1)) as sandbox:
        client = openai.OpenAI(base_url=sandbox.base_url, api_key="x")

Module map: server (running it), handler (HTTP, and `/_sandbox` knobs), app (state, counts,
auth, the route table), api_files + api_batches (endpoints), exchange (what an endpoint gets
and gives back), wire (streaming request bodies, error answers), file_store + batches (stores
on disk), disk (records, atomic writes, locks, ids), lifecycle (status and JSON at a moment),
validation (input lines), outputs (output/error files), responder (the tiny model),
webhook_sender (webhooks out), config (knobs, fault dice).  The CLI's in-process sandbox
(knobs from $RECONCILER_SANDBOX) is reconciler/engine/embedded_sandbox.py.
"""

from reconciler.sandbox.config import SandboxConfig
from reconciler.sandbox.server import Sandbox, start_sandbox

__all__ = ["Sandbox", "SandboxConfig", "start_sandbox"]
