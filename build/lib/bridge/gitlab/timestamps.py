"""GitLab's timestamp formats, all parsed to aware UTC datetimes.

Job events carry ISO 8601 (`2021-02-23T02:41:37.886Z`, and `*_iso` fields without
fractions); older job events and all pipeline events use `2016-08-12 15:23:28 UTC`;
some versions write an offset instead (`2021-03-05 10:16:31 +0100`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_LEGACY = re.compile(
    r"^(?P<stamp>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) (?P<zone>UTC|[+-]\d{4})$"
)


def parse_gitlab_time(value: object) -> datetime | None:
    """Parse either format; None stays None; anything else raises ValueError."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return _as_utc(value)
    if not isinstance(value, str):
        raise ValueError("expected a timestamp string")
    legacy = _LEGACY.match(value)
    if legacy:
        zone = "+0000" if legacy["zone"] == "UTC" else legacy["zone"]
        text = f"{legacy['stamp']} {zone}"
        layout = "%Y-%m-%d %H:%M:%S.%f %z" if "." in legacy["stamp"] else "%Y-%m-%d %H:%M:%S %z"
        try:
            return datetime.strptime(text, layout).astimezone(UTC)
        except ValueError:
            raise ValueError(f"not a GitLab timestamp: {value!r}") from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not a GitLab timestamp: {value!r}") from None
    return _as_utc(parsed)


def _as_utc(moment: datetime) -> datetime:
    # GitLab stores UTC; a timestamp without a zone can only mean UTC.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
