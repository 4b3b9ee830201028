"""An independent, deliberately naive recomputation of invoices from delivered events.

It shares no code with the bridge: it reads the raw JSON the way the billing rules in
ARCHITECTURE.md are written, so a bug in the bridge's ledger cannot hide in both.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

TERMINAL = {"success", "failed", "canceled"}
PRICES = {"gpu": Decimal("0.50"), "large": Decimal("0.05"), "standard": Decimal("0.02")}
CLASSES = [("gpu", {"gpu"}), ("large", {"docker", "large"}), ("standard", set())]
CLIENTS = {"acme-vision": "acme", "acme-nlp": "acme"}


def _time(text: str | None) -> datetime | None:
    if text is None:
        return None
    if text.endswith(" UTC"):
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _facts(payload: dict[str, Any]) -> list[dict[str, Any]]:
    if payload["object_kind"] == "build":
        return [
            {
                "id": payload["build_id"],
                "status": payload["build_status"],
                "project": payload["project"]["path_with_namespace"],
                "runner": payload["runner"],
                "started": _time(payload["build_started_at"]),
                "finished": _time(payload["build_finished_at"]),
                "duration": payload["build_duration"],
            }
        ]
    return [
        {
            "id": build["id"],
            "status": build["status"],
            "project": payload["project"]["path_with_namespace"],
            "runner": build["runner"],
            "started": _time(build["started_at"]),
            "finished": _time(build["finished_at"]),
            "duration": build["duration"],
        }
        for build in payload["builds"]
    ]


def invoices(deliveries: list[tuple[str | None, dict[str, Any]]]) -> dict[tuple[str, str], Any]:
    """{(client, period): {class: (jobs, seconds, amount)}} from (key, payload) in order."""
    seen_keys: set[str] = set()
    first_terminal: dict[int, dict[str, Any]] = {}
    for key, payload in deliveries:
        if key is not None:
            if key in seen_keys:
                continue
            seen_keys.add(key)
        for fact in _facts(payload):
            if fact["status"] in TERMINAL and fact["id"] not in first_terminal:
                first_terminal[fact["id"]] = fact

    totals: dict[tuple[str, str], dict[str, list[Decimal]]] = defaultdict(
        lambda: defaultdict(lambda: [Decimal(0), Decimal(0)])
    )
    for fact in first_terminal.values():
        if fact["runner"] is None:
            continue
        if fact["duration"] is not None:
            seconds = Decimal(str(fact["duration"]))
        elif fact["started"] and fact["finished"]:
            seconds = Decimal(str((fact["finished"] - fact["started"]).total_seconds()))
        else:
            seconds = Decimal(0)
        seconds = max(seconds, Decimal(0))
        tags = set(fact["runner"]["tags"])
        runner_class = next(name for name, needed in CLASSES if needed <= tags)
        group = fact["project"].split("/")[0]
        client = CLIENTS.get(group, group)
        period = fact["finished"].strftime("%Y-%m")
        line = totals[(client, period)][runner_class]
        line[0] += 1
        line[1] += seconds

    result = {}
    for invoice_key, lines in totals.items():
        result[invoice_key] = {
            name: (
                int(jobs),
                seconds,
                (seconds / 60 * PRICES[name]).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP),
            )
            for name, (jobs, seconds) in lines.items()
        }
    return result
