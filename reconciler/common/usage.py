"""What a run used and what it cost: tokens metered from output lines, and the prices it ran at.

Plain data shared by specs (prices), state (what a run used) and plans (estimates).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are USD per million tokens, as providers publish them
TOKEN_KINDS = ("input", "cached_input", "output", "reasoning")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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
