"""The Batch API's limits, and the share of them the reconciler keeps: one home for each number."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.common.ownership import RESERVED_KEYS

MAX_INPUT_REQUESTS = 50_000
MAX_INPUT_BYTES = 200 * 1024 * 1024
# Embeddings count inputs, not requests: a request's `input` may be a list of texts.
MAX_EMBEDDING_INPUTS_PER_REQUEST = 2_048
MAX_EMBEDDING_INPUTS = 50_000  # across every request of one embeddings batch

# A file's `expires_after` on upload; purpose=batch files expire after the most by default.
MIN_FILE_EXPIRY_SECONDS = 3600
MAX_FILE_EXPIRY_SECONDS = 30 * 24 * 3600

MAX_METADATA_PAIRS = 16
MAX_USER_METADATA_PAIRS = MAX_METADATA_PAIRS - len(RESERVED_KEYS)
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512

# What an omitted `provider` means: the built-in sandbox. No Provider may take the name.
SANDBOX = "sandbox"


@dataclass(frozen=True)
class InputLimits:
    """What one batch's input may hold: checked by validate, and where split cuts parts."""

    max_requests: int = MAX_INPUT_REQUESTS
    max_bytes: int = MAX_INPUT_BYTES
    max_inputs: int = MAX_EMBEDDING_INPUTS  # embedding inputs; only embeddings jobs count them


# A job with `split` is cut into parts that each fit the limits, so its whole input may exceed them.
API_LIMITS = InputLimits()
NO_LIMITS = InputLimits(max_requests=2**62, max_bytes=2**62, max_inputs=2**62)
