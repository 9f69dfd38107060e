"""The metadata keys every batch we create carries: who owns it and what it is part of.

The Batch API has no idempotency key and no server-side filter, so the live list, read
through these keys, is the source of truth.  Written by engine.apply, read by api.batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

KEY_JOB = "reconciler_job"
KEY_GENERATION = "reconciler_generation"
KEY_OWNER = "reconciler_owner"
KEY_ATTEMPT = "reconciler_attempt"
KEY_PART = "reconciler_part"
KEY_RETRY = "reconciler_retry"
KEY_RUN = "reconciler_run"  # the run a batch belongs to: one execution of the job
KEY_DELETION_POLICY = "reconciler_deletion_policy"  # cancel | orphan, fixed when the batch is created
RESERVED_KEYS = (
    KEY_JOB,
    KEY_GENERATION,
    KEY_OWNER,
    KEY_ATTEMPT,
    KEY_PART,
    KEY_RETRY,
    KEY_RUN,
    KEY_DELETION_POLICY,
)
RESERVED_PREFIX = "reconciler_"

# The run of a batch created before runs existed, and of a job with no `run:` and no schedule.
DEFAULT_RUN = "default"


def generation(definition: Mapping[str, Any], input_sha256: str) -> str:
    """A short, stable hash of what defines a job's batches (KEY_GENERATION); any change means
    a new batch."""
    canonical = json.dumps({"definition": definition, "input": input_sha256}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
