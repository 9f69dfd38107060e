"""One provider's API as the engine holds it: a reader for every phase, a writer for apply."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from reconciler.api.reader import BatchReader
from reconciler.api.transport import Transport
from reconciler.api.writer import BatchWriter


@dataclass(frozen=True)
class ProviderApi:
    reader: BatchReader
    writer: BatchWriter

    @classmethod
    def over(cls, transport: Transport) -> ProviderApi:
        return cls(BatchReader(transport), BatchWriter(transport))

    @property
    def requests(self) -> Counter[str]:
        """Requests sent so far, per endpoint: what tests and benchmarks count."""
        return self.reader.transport.requests
