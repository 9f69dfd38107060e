"""The shipped price table, and how a job's model finds its price.

PRICES_SOURCE, PRICES_TAKEN: where these figures come from and when they were taken. They are
the Batch API's prices (half the standard ones), USD per million tokens; providers change
prices, so a Provider's own `pricing:` wins over this table, model by model. A model found in
neither has no price: the plan says so rather than guessing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from reconciler.common.usage import UnitPrices
from reconciler.specs.models import ModelPrice, Provider

PRICES_SOURCE = "OpenAI API pricing, Batch API column (https://openai.com/api/pricing/)"
PRICES_TAKEN = "2025-08-07"
_DATED_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")  # gpt-4o-mini-2024-07-18 is priced as gpt-4o-mini

# model: (input, cached input or None, output, the model's max output tokens or None)
_TABLE: dict[str, tuple[float, float | None, float, int | None]] = {
    "gpt-5": (0.625, 0.0625, 5.00, 128_000),
    "gpt-5-mini": (0.125, 0.0125, 1.00, 128_000),
    "gpt-5-nano": (0.025, 0.0025, 0.20, 128_000),
    "gpt-4.1": (1.00, 0.25, 4.00, 32_768),
    "gpt-4.1-mini": (0.20, 0.05, 0.80, 32_768),
    "gpt-4.1-nano": (0.05, 0.0125, 0.20, 32_768),
    "gpt-4o": (1.25, 0.625, 5.00, 16_384),
    "gpt-4o-mini": (0.075, 0.0375, 0.30, 16_384),
    "o1": (7.50, 3.75, 30.00, 100_000),
    "o3": (1.00, 0.25, 4.00, 100_000),
    "o3-mini": (0.55, 0.275, 2.20, 100_000),
    "o4-mini": (0.55, 0.1375, 2.20, 100_000),
    "gpt-4-turbo": (5.00, None, 15.00, 4_096),
    "gpt-3.5-turbo": (0.25, None, 0.75, 4_096),
    "text-embedding-3-small": (0.01, None, 0.0, None),
    "text-embedding-3-large": (0.065, None, 0.0, None),
    "text-embedding-ada-002": (0.05, None, 0.0, None),
    "omni-moderation-latest": (0.0, None, 0.0, None),
    "text-moderation-latest": (0.0, None, 0.0, None),
}

DEFAULT_PRICES: dict[str, UnitPrices] = {
    model: UnitPrices(input=i, cached_input=c, output=o, max_output_tokens=m)
    for model, (i, c, o, m) in _TABLE.items()
}


def unit_prices(price: ModelPrice) -> UnitPrices:
    return UnitPrices(
        input=price.input,
        output=price.output,
        cached_input=price.cached_input,
        max_output_tokens=price.max_output_tokens,
    )


def price_for(model: str, provider: Provider | None) -> UnitPrices | None:
    """The provider's own price for `model`, else the shipped one, else None (no price)."""
    own = {name: unit_prices(p) for name, p in provider.spec.pricing.items()} if provider else {}
    return _lookup(model, own) or _lookup(model, DEFAULT_PRICES)


def _lookup(model: str, table: Mapping[str, UnitPrices]) -> UnitPrices | None:
    return table.get(model) or table.get(_DATED_SNAPSHOT.sub("", model))
