"""Prometheus metrics of a bridge process (one registry per app, so tests stay isolated)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.events = Counter(
            "bridge_webhook_events",
            "Webhook deliveries by result (recorded, duplicate, conflict, ignored, rejected).",
            ["result"],
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            "bridge_webhook_ingest_seconds",
            "Time from receiving a webhook to answering it.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.conflicts = Gauge(
            "bridge_ledger_conflicts",
            "Terminal facts that disagreed with the billed one (kept, not billed).",
            registry=self.registry,
        )
        self.database_up = Gauge(
            "bridge_database_up",
            "1 if the last scrape could read the ledger.",
            registry=self.registry,
        )
