"""Stored deliveries back to job facts, for `bridge rebuild` (one entry per source)."""

from __future__ import annotations

from bridge.facts import JobFact
from bridge.gitlab import rest
from bridge.gitlab.webhooks import decode_json, parse_event


def facts_of(source: str, kind: str, body: bytes) -> list[JobFact]:
    if source == "webhook":
        return parse_event(decode_json(body)).facts
    if source == "reconcile" and kind == rest.KIND:
        return [rest.parse_envelope(body).to_fact()]
    raise ValueError(f"raw event of unknown source {source!r} (kind {kind!r})")
