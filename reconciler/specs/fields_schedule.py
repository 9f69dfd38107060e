"""The checks behind a job's time fields: cron expression, time zone, durations, run label, the
expiry of its uploads."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import AfterValidator, BeforeValidator, Field

from reconciler.common import limits
from reconciler.specs.fields import _invalid, _schema, _show


def _cron(value: str) -> str:
    fields = value.split()
    if len(fields) != 5:
        raise _invalid(f"{_show(value)} has {len(fields)} fields; write five: minute hour day month weekday")
    try:
        CronSim(value, datetime.now(UTC))
    except (CronSimError, ValueError) as error:
        raise _invalid(f"{_show(value)} is not a cron expression ({error})") from None
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid(f"{_show(value)} is not an IANA time zone; write e.g. Europe/Berlin or UTC") from None
    return value


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: int | str) -> int:
    """`2h`, `30m`, `1d`, `90s`, or seconds; at least one second."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", str(value))
        if not match:
            raise _invalid(f"{_show(str(value))} is not a duration; write e.g. 2h, 30m, 1d or 90s")
        seconds = int(match.group(1)) * DURATION_UNITS[match.group(2)]
    if seconds < 1:
        raise _invalid("must be at least one second")
    return seconds


def _file_expiry(seconds: int) -> int:
    if not limits.MIN_FILE_EXPIRY_SECONDS <= seconds <= limits.MAX_FILE_EXPIRY_SECONDS:
        raise _invalid("must be between 1h and 30d (what the Files API accepts), e.g. 7d")
    return seconds


Cron = Annotated[str, AfterValidator(_cron)]
TimeZone = Annotated[str, AfterValidator(_timezone)]
Duration = Annotated[
    int, BeforeValidator(_duration), _schema(type=["integer", "string"], pattern=r"^\d+[smhd]$")
]
FileExpiry = Annotated[Duration, AfterValidator(_file_expiry)]
RunLabel = Annotated[str, Field(min_length=1, max_length=200)]
