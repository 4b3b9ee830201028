"""Datasets as a table, CSV or JSON for the command line (the JSON is the API's shape)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

CSV_COLUMNS = ("id", "group", "created_at", "created_by", "file_count", "total_bytes", "metadata")


def public(dataset: dict[str, Any]) -> dict[str, Any]:
    """The documented fields of one dataset in a listing."""
    keys = ("id", "group", "metadata", "files", "created_at", "created_by")
    return {key: dataset[key] for key in keys}


def to_csv(datasets: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in datasets:
        row = [d["id"], d["group"], d["created_at"], d["created_by"], d["file_count"]]
        writer.writerow([*row, d["total_bytes"], json.dumps(d["metadata"], sort_keys=True)])
    return out.getvalue()


def to_table(datasets: list[dict[str, Any]]) -> str:
    rows = [("ID", "GROUP", "CREATED (UTC)", "FILES", "BYTES", "METADATA")]
    for d in datasets:
        metadata = json.dumps(d["metadata"], sort_keys=True, ensure_ascii=False)
        rows.append(
            (
                d["id"][:12],
                d["group"],
                d["created_at"][:19].replace("T", " "),
                str(d["file_count"]),
                str(d["total_bytes"]),
                metadata if len(metadata) <= 60 else metadata[:57] + "...",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]) for r in rows
    ]
    return "\n".join(line.rstrip() for line in lines)
