"""Stored deliveries back to job facts, for `bridge rebuild` (one entry per source)."""

from __future__ import annotations

from typing import Any

from bridge.facts import JobFact
from bridge.gitlab.webhooks import parse_event


def facts_of(source: str, kind: str, payload: dict[str, Any]) -> list[JobFact]:
    if source == "webhook":
        return parse_event(payload).facts
    raise ValueError(f"raw event of unknown source {source!r} (kind {kind!r})")
