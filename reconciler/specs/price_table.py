"""The shipped price table's data: Batch API prices in USD per million tokens, each with the source
it was read from and the date it was taken, and why a model is left without one
(`unpriced_reason`: what the pure planner needs of it).  `prices.py` looks prices up.

How to refresh it: read each model's price on the provider's own pages, write the Batch API price
(input, cached input, output) and the model's max output tokens below with the source it came
from, and move a model you cannot source to UNPRICED with the reason.  Never guess a price: a
model without one is reported as "no price" and a budget over it is refused.
"""

from __future__ import annotations

import re
from typing import NamedTuple

DATED_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")  # gpt-4o-mini-2024-07-18 is priced as gpt-4o-mini


class Source(NamedTuple):
    url: str
    taken: str  # ISO date the figures were read
    how: str  # what was read there, and how it became a Batch API price


class Entry(NamedTuple):
    input: float
    cached_input: float | None  # None: not given by the source; cached input is charged as input
    output: float
    max_output_tokens: int | None  # None: no output cap (embeddings, moderation)
    source: str  # a key of SOURCES


SOURCES: dict[str, Source] = {
    "openai-pricing-2025-08-07": Source(
        url="https://openai.com/api/pricing/",
        taken="2025-08-07",
        how="the Batch API column of OpenAI's pricing page",
    ),
    "openai-model-pages-2026-12-06": Source(
        url="https://developers.openai.com/api/docs/models/<model>",
        taken="2026-12-06",
        how=(
            "each model's page on OpenAI's developer site (text tokens: input, cached input, output; "
            "max output tokens), halved for the Batch API, which OpenAI bills at 50% of these prices "
            "(https://help.openai.com/en/articles/9197833-batch-api-faq); read from stored copies of "
            "the pages on the date given"
        ),
    ),
    "openai-models-overview-2026-12-06": Source(
        url="https://developers.openai.com/docs/models",
        taken="2026-12-06",
        how=(
            "the input and output prices and max output of OpenAI's model overview, halved for the "
            "Batch API as above; it gives no cached-input price, so cached input is charged as input "
            "(an upper bound); read from a stored copy of the page on the date given"
        ),
    ),
}

_PAGES = "openai-model-pages-2026-12-06"
_OVERVIEW = "openai-models-overview-2026-12-06"
_PRICING_2025 = "openai-pricing-2025-08-07"

TABLE: dict[str, Entry] = {
    # GPT-5 family, read from OpenAI's model pages (Standard prices / 2)
    "gpt-5.1": Entry(0.625, 0.0625, 5.00, 128_000, _PAGES),  # $1.25 / $0.125 / $10
    "gpt-5-pro": Entry(7.50, None, 60.00, 272_000, _PAGES),  # $15 / - / $120
    "gpt-5-mini": Entry(0.125, 0.0125, 1.00, 128_000, _PAGES),  # $0.25 / $0.025 / $2
    "gpt-5-nano": Entry(0.025, 0.0025, 0.20, 128_000, _PAGES),  # $0.05 / $0.005 / $0.40
    "gpt-5.4-nano": Entry(0.10, 0.01, 0.625, 128_000, _PAGES),  # $0.20 / $0.02 / $1.25
    "gpt-3.5-turbo": Entry(0.25, None, 0.75, 4_096, _PAGES),  # $0.50 / - / $1.50
    # from OpenAI's model overview: no cached-input price given
    "gpt-5.5": Entry(2.50, None, 15.00, 128_000, _OVERVIEW),  # $5 / $30
    "gpt-5.4": Entry(1.25, None, 7.50, 128_000, _OVERVIEW),  # $2.50 / $15
    "gpt-5.4-mini": Entry(0.375, None, 2.25, 128_000, _OVERVIEW),  # $0.75 / $4.50
    # not found again in 2026: the Batch column of 2025-08-07 (plan warns that they are old)
    "gpt-5": Entry(0.625, 0.0625, 5.00, 128_000, _PRICING_2025),
    "gpt-4.1": Entry(1.00, 0.25, 4.00, 32_768, _PRICING_2025),
    "gpt-4.1-mini": Entry(0.20, 0.05, 0.80, 32_768, _PRICING_2025),
    "gpt-4.1-nano": Entry(0.05, 0.0125, 0.20, 32_768, _PRICING_2025),
    "gpt-4o": Entry(1.25, 0.625, 5.00, 16_384, _PRICING_2025),
    "gpt-4o-mini": Entry(0.075, 0.0375, 0.30, 16_384, _PRICING_2025),
    "o1": Entry(7.50, 3.75, 30.00, 100_000, _PRICING_2025),
    "o3": Entry(1.00, 0.25, 4.00, 100_000, _PRICING_2025),
    "o3-mini": Entry(0.55, 0.275, 2.20, 100_000, _PRICING_2025),
    "o4-mini": Entry(0.55, 0.1375, 2.20, 100_000, _PRICING_2025),
    "gpt-4-turbo": Entry(5.00, None, 15.00, 4_096, _PRICING_2025),
    "text-embedding-3-small": Entry(0.01, None, 0.0, None, _PRICING_2025),
    "text-embedding-3-large": Entry(0.065, None, 0.0, None, _PRICING_2025),
    "text-embedding-ada-002": Entry(0.05, None, 0.0, None, _PRICING_2025),
    "omni-moderation-latest": Entry(0.0, None, 0.0, None, _PRICING_2025),
    "text-moderation-latest": Entry(0.0, None, 0.0, None, _PRICING_2025),
}

_NOT_FOUND = "no OpenAI page giving its text-token prices was at hand when the table was refreshed"
_IMAGES = (
    "an image model: billed per image and by image-token kinds a per-token input/output price cannot express"
)
_VIDEO = "a video model: billed per second of video, not per token"

# Models the table leaves without a price on purpose, and why: the plan says so instead of guessing.
UNPRICED: dict[str, str] = {
    "gpt-5.2": _NOT_FOUND,
    "gpt-5.2-pro": _NOT_FOUND,
    "gpt-5.4-pro": _NOT_FOUND,
    "gpt-5.5-pro": _NOT_FOUND,
    "o3-pro": _NOT_FOUND,
    "o1-pro": _NOT_FOUND,
    "gpt-image-1": _IMAGES,
    "gpt-image-1-mini": _IMAGES,
    "dall-e-3": _IMAGES,
    "dall-e-2": _IMAGES,
    "sora-2": _VIDEO,
    "sora-2-pro": _VIDEO,
}


def unpriced_reason(model: str) -> str | None:
    """Why the shipped table leaves `model` without a price, when it does so on purpose."""
    return UNPRICED.get(model) or UNPRICED.get(DATED_SNAPSHOT.sub("", model))
