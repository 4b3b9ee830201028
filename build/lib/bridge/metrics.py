"""Prometheus metrics of a bridge process (one registry per app, so tests stay isolated).

Sweeps run in another process (`bridge reconcile`), so their metrics are read from the
ledger's record of sweeps at each scrape rather than counted here.
"""

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
        self.sweeps = Gauge(
            "bridge_reconcile_sweeps",
            "Reconciliation sweeps recorded in the ledger, by status "
            "(running, completed, failed); started = the sum.",
            ["status"],
            registry=self.registry,
        )
        self.sweep_jobs = Gauge(
            "bridge_reconcile_jobs_recorded",
            "Jobs that reconciliation sweeps recorded (webhooks had missed them), all sweeps.",
            registry=self.registry,
        )
        self.last_sweep = Gauge(
            "bridge_reconcile_last_completed_timestamp_seconds",
            "When the last completed sweep started (0: none yet).",
            registry=self.registry,
        )
        self.samples = Counter(
            "bridge_usage_samples",
            "Usage samples received from collectors, by result (accepted, rejected).",
            ["result"],
            registry=self.registry,
        )
        self.samples_changed = Counter(
            "bridge_usage_containers_changed",
            "Container totals that grew because of a usage sample.",
            registry=self.registry,
        )
