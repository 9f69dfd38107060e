"""One provider's API as the engine holds it: its transport, and a reader for every phase.

The writing half is not here: apply builds it from the transport (engine/apply/effects.py),
and no other code may import it (pyproject.toml's contract).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from reconciler.api.reader import BatchReader
from reconciler.api.transport import Transport


@dataclass(frozen=True)
class ProviderApi:
    transport: Transport
    reader: BatchReader

    @classmethod
    def over(cls, transport: Transport) -> ProviderApi:
        return cls(transport, BatchReader(transport))

    @property
    def requests(self) -> Counter[str]:
        """Requests sent so far, per endpoint: what tests and benchmarks count."""
        return self.transport.requests
