"""What a run used and what it cost: tokens metered from output lines, the prices it ran at, and
the one way an amount of money is written (`usd`, `usd_each`).

Plain data shared by specs (prices), state (what a run used) and plans (estimates).

Money is written one way in every output (plan, apply, status, output, log lines, budget
messages; JSON keeps the raw numbers): dollars and cents from ten cents up (`$1,234.56`), two
significant digits below (`$0.072`, `$0.000072`), never in e-notation, and zero as `$0.00`.
Amounts shown together (one sentence: a budget refusal, an estimate) take the fewest extra
digits that make any two different amounts read differently: `up to $0.000198 does not fit in
... $0.0002` rather than `$0.0002` twice.  Amounts that agree to 12 significant digits are one
amount (a sum's float rounding is not a difference).
"""

from __future__ import annotations

import functools
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are USD per million tokens, as providers publish them
TOKEN_KINDS = ("input", "cached_input", "output", "reasoning")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def model_post_init(self, context: Any, /) -> None:
        # One set of given fields per class, not per instance: a job's prices and usages are
        # kept in its state record (see state/model.py for why sharing it is safe).
        object.__setattr__(self, "__pydantic_fields_set__", _all_fields(type(self)))


@functools.cache
def _all_fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


class TokenUsage(_Frozen):
    """Tokens as the provider counted them. `cached_input` is part of `input` and `reasoning`
    part of `output`, as in the API's own usage objects."""

    input: int = 0
    cached_input: int = 0
    output: int = 0
    reasoning: int = 0
    requests: int = 0  # output lines that carried a usage
    unread: bool = False  # the output file could not be read (gone): these figures fall short

    def plus(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input=self.input + other.input,
            cached_input=self.cached_input + other.cached_input,
            output=self.output + other.output,
            reasoning=self.reasoning + other.reasoning,
            requests=self.requests + other.requests,
            unread=self.unread or other.unread,
        )

    def by_kind(self) -> dict[str, int]:
        return {kind: getattr(self, kind) for kind in TOKEN_KINDS}


class UnitPrices(_Frozen):
    """USD per million tokens, batch prices. `cached_input` None: cached input costs as input."""

    input: float
    output: float
    cached_input: float | None = None
    max_output_tokens: int | None = None  # the model's own cap: bounds a request that sets none

    def cost(self, usage: TokenUsage) -> float:
        cached = min(usage.cached_input, usage.input)
        cached_price = self.input if self.cached_input is None else self.cached_input
        usd = (usage.input - cached) * self.input + cached * cached_price + usage.output * self.output
        return usd / TOKENS_PER_PRICE_UNIT


def total_usage(usages: dict[str, TokenUsage]) -> TokenUsage:
    total = TokenUsage()
    for usage in usages.values():
        total = total.plus(usage)
    return total


SAME_AMOUNT_DIGITS = 12  # significant digits past which two amounts are the same amount
_CENTS_FROM = Decimal("0.1")


def usd(amount: float) -> str:
    """`$1,234.56`, `$0.072`, `$0.000072`: see the module's docstring."""
    return usd_each(amount)[0]


def usd_each(*amounts: float) -> tuple[str, ...]:
    """Amounts shown together, each as `usd` writes it, with more digits where two different
    amounts would otherwise read the same."""
    same = [float(f"{a:.{SAME_AMOUNT_DIGITS}g}") for a in amounts]
    for extra in range(SAME_AMOUNT_DIGITS + 1):
        shown = tuple(_usd(a, extra) for a in amounts)
        pairs = set(zip(same, shown, strict=True))
        if len(pairs) == len(set(same)) == len(set(shown)):  # one text per amount, one amount per text
            return shown
    return shown


def _usd(amount: float, extra: int) -> str:
    value = abs(Decimal(repr(float(amount))))
    if value == 0:
        return "$0.00"
    significant = 2 - 1 - value.adjusted()  # places for two significant digits
    places = (2 if value >= _CENTS_FROM else max(significant, 2)) + extra
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    whole, _, fraction = f"{rounded:,f}".partition(".")
    sign = "-" if amount < 0 else ""
    return f"{sign}${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def short_count(count: int) -> str:
    """`4.2M`, `12.0k`, `950`: a count of tokens where a table or a sentence has little room."""
    for suffix, size in (("M", 1_000_000), ("k", 1_000)):
        if count >= size:
            return f"{count / size:.1f}{suffix}"
    return str(count)
