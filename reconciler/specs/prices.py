"""How a job's model finds its price: the Provider's own `pricing:` first, then the shipped table.

The table (`price_table.py`) holds Batch API prices, USD per million tokens, each model with the
source it was read from and the date it was taken: a plan priced from it says that date, and
warns when it is old.  A model found in neither has no price: the plan says so rather than
guessing (and, for a model the table leaves out on purpose, why: `price_table.unpriced_reason`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from reconciler.common.usage import UnitPrices
from reconciler.specs.models import ModelPrice, Provider
from reconciler.specs.price_table import DATED_SNAPSHOT, SOURCES, TABLE, Entry


@dataclass(frozen=True)
class Price:
    prices: UnitPrices
    taken: date | None = None  # from the shipped table: when; None: the Provider's own pricing
    source: str = ""  # the table's source for it (a URL)


def _table_price(entry: Entry) -> Price:
    prices = UnitPrices(
        input=entry.input,
        cached_input=entry.cached_input,
        output=entry.output,
        max_output_tokens=entry.max_output_tokens,
    )
    source = SOURCES[entry.source]
    return Price(prices, date.fromisoformat(source.taken), source.url)


SHIPPED: dict[str, Price] = {model: _table_price(entry) for model, entry in TABLE.items()}
DEFAULT_PRICES: dict[str, UnitPrices] = {model: price.prices for model, price in SHIPPED.items()}


def unit_prices(price: ModelPrice) -> UnitPrices:
    return UnitPrices(
        input=price.input,
        output=price.output,
        cached_input=price.cached_input,
        max_output_tokens=price.max_output_tokens,
    )


def find_price(model: str, provider: Provider | None) -> Price | None:
    """The provider's own price for `model`, else the shipped one, else None (no price)."""
    own = {name: Price(unit_prices(p)) for name, p in provider.spec.pricing.items()} if provider else {}
    return _lookup(model, own) or _lookup(model, SHIPPED)


def price_for(model: str, provider: Provider | None) -> UnitPrices | None:
    found = find_price(model, provider)
    return found.prices if found else None


def _lookup(model: str, table: Mapping[str, Price]) -> Price | None:
    return table.get(model) or table.get(DATED_SNAPSHOT.sub("", model))
