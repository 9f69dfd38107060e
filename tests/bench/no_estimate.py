"""`python -m tests.bench.no_estimate ARGS…`: the reconciler CLI with the token estimate taken out.

The counterfactual of item 8 ("plan time without the estimate"): every request line is still
parsed and checked, only the per-request token count is replaced by a constant. Measurement
harness only; never used by a test.
"""

from __future__ import annotations

import sys
from typing import Any

from reconciler.cli.main import main
from reconciler.specs.inputs import digest


def _no_count(endpoint: str, body: dict[str, Any]) -> tuple[int, int]:
    return 0, 0


if __name__ == "__main__":
    # Swapped where digest.py looks it up: the name it imported, which it does not re-export.
    digest.request_tokens = _no_count  # type: ignore[attr-defined]
    sys.exit(main(sys.argv[1:]))
