"""Invoice and usage documents rendered as a terminal table or CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

CSV_COLUMNS = (
    "client", "period", "kind", "for_period", "runner_class", "jobs", "billable_seconds",
    "amount", "exact_amount", "currency",
)  # fmt: skip


def to_csv(document: dict[str, Any]) -> str:
    """One row per line, then a `total` row; amounts exactly as in the JSON document."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    common = {
        "client": document["client"],
        "period": document["period"],
        "currency": document["currency"],
    }
    for line in document["lines"]:
        writer.writerow({**common, **{k: line.get(k, "") for k in CSV_COLUMNS if k in line}})
    writer.writerow({**common, "kind": "total", "amount": document["total"]})
    return out.getvalue()


def to_table(document: dict[str, Any]) -> str:
    """A human-readable invoice, with conflicts listed under it."""
    state = "finalized" if document.get("finalized") else "open (not finalized)"
    rows = [("kind", "class", "jobs", "seconds", "amount", "exact amount")]
    for line in document["lines"]:
        kind = line["kind"]
        if "for_period" in line:
            kind = f"{kind} for {line['for_period']}"
        rows.append(
            (
                kind,
                line["runner_class"],
                str(line["jobs"]),
                line["billable_seconds"],
                line["amount"],
                line["exact_amount"],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    text = [f"Invoice {document['client']} {document['period']} ({state})", ""]
    for number, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        text.append("  ".join(cells).rstrip())
        if number == 0:
            text.append("  ".join("-" * w for w in widths))
    if len(rows) == 1:
        text.append("(no billable jobs)")
    text.append("")
    text.append(f"Total: {document['total']} {document['currency']}")
    conflicts = document.get("conflicts") or []
    if conflicts:
        text.append("")
        text.append(f"Conflicts ({len(conflicts)}): later terminal facts that disagree, not billed")
        for conflict in conflicts:
            text.append(
                f"  job {conflict['build_id']}: billed {conflict['recorded']}, "
                f"ignored {conflict['incoming']}"
            )
    return "\n".join(text)
