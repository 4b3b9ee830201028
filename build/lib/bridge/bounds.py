"""Field types for everything the bridge accepts from outside, bounded to what it can store.

Postgres refuses what these refuse (a NUL in text, an integer beyond bigint), and the
ledger's arithmetic cannot bill what they refuse (NaN, infinities, negative or absurd
durations, timestamps outside any real job's life). Checking at the boundary turns each
of those into a 4xx that names the field, instead of an error deep in the database or in
an invoice computed months later.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

from bridge.gitlab.timestamps import parse_gitlab_time

MAX_BIGINT = 2**63 - 1
# Ten years: longer than any job can run (GitLab's maximum job timeout is one month).
MAX_SECONDS = 10 * 365 * 24 * 3600
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
MAX_TEXT = 4096


def _plain_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _in_range(moment: datetime | None) -> datetime | None:
    if moment is not None and not EARLIEST <= moment < LATEST:
        raise ValueError(f"must be between {EARLIEST.year} and {LATEST.year}")
    return moment


def _gitlab_time(value: object) -> datetime | None:
    try:
        return parse_gitlab_time(value)
    except OverflowError:
        raise ValueError("timestamp out of range") from None


# An id GitLab (or a collector) assigned: positive and within Postgres' bigint.
Id = Annotated[int, Field(gt=0, le=MAX_BIGINT)]
NoNul = AfterValidator(_plain_text)
Text = Annotated[str, Field(max_length=MAX_TEXT), NoNul]
Seconds = Annotated[
    float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False), AfterValidator(_finite)
]
# GitLab's timestamp formats (see `bridge.gitlab.timestamps`), within a plausible range.
Timestamp = Annotated[datetime | None, BeforeValidator(_gitlab_time), AfterValidator(_in_range)]
# An ISO 8601 timestamp with a zone, within the same range.
Moment = Annotated[AwareDatetime, AfterValidator(_in_range)]
