"""Registering, listing and reading datasets, with the access rule: a client sees the datasets
of the GitLab groups that bill to it; the admin sees all."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from bridge.auth import Caller
from bridge.billing import Rates
from bridge.datasets import queries
from bridge.datasets.manifest import DIGEST, FileEntry, canonical, dataset_id, manifest_bytes
from bridge.datasets.query import Condition

# GitLab group paths: segments of letters, digits, '_', '-', '.', not starting with '-' or '.'.
GROUP = re.compile(
    r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}(/[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}){0,20}$"
)
MAX_METADATA_BYTES = 64 * 1024
MAX_PAGE = 1000
# Each condition on a line of its own in the composed statement.
_MATCHES = "\n  AND metadata @? {}::jsonpath"
_EXCLUDES = "\n  AND NOT (metadata @? {}::jsonpath)"


class InvalidDataset(ValueError):
    """The request breaks a rule of the registry; the message says which."""


class DatasetConflict(RuntimeError):
    """The same files are already registered by another group."""


class UnknownDataset(LookupError):
    pass


@dataclass(frozen=True)
class Registered:
    dataset: dict[str, Any]
    created: bool


def check_group(group: str) -> str:
    if not isinstance(group, str) or not GROUP.match(group):
        raise InvalidDataset(
            f"group {group!r} must be a GitLab group path like 'lab' or 'lab/team'"
        )
    return group


def check_metadata(metadata: Any) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise InvalidDataset("metadata must be a JSON object")
    try:
        # Postgres refuses NaN, lone surrogates and NUL in jsonb: refuse them here, as 4xx.
        encoded = json.dumps(metadata, ensure_ascii=False, allow_nan=False)
        size = len(encoded.encode())
    except (ValueError, RecursionError) as exc:
        raise InvalidDataset(f"metadata is not storable JSON: {exc}") from None
    if size > MAX_METADATA_BYTES:
        raise InvalidDataset(f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON")
    if "\\u0000" in encoded:
        raise InvalidDataset("metadata must not contain NUL characters")
    return metadata


def client_of_group(rates: Rates, group: str) -> str:
    """The billing client of a group: its top-level group lower-cased, through `clients:`."""
    return rates.client_of(group.lower())


def register(
    conn: psycopg.Connection,
    rates: Rates,
    caller: Caller,
    files: Iterable[FileEntry],
    group: str,
    metadata: Mapping[str, Any],
    created_by: str,
) -> Registered:
    """Record a dataset whose files (and manifest) are in the store. The same files again
    return the dataset already recorded; under another group they are refused."""
    check_group(group)
    check_metadata(metadata)
    client = client_of_group(rates, group)
    caller.require_client(client)
    entries = canonical(files)
    identity = dataset_id(entries)
    params = {
        "id": identity,
        "group": group,
        "client": client,
        "metadata": Jsonb(metadata),
        "files": Jsonb([e.as_dict() for e in entries]),
        "file_count": len(entries),
        "total_bytes": sum(e.size for e in entries),
        "created_by": created_by,
    }
    created = conn.execute(queries.INSERT_DATASET, params).fetchone() is not None
    dataset = get(conn, caller, identity)
    if not created and dataset["group"] != group:
        raise DatasetConflict(
            f"these files are already registered as dataset {identity} by group "
            f"{dataset['group']!r}"
        )
    return Registered(dataset, created)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["created_at"] = row["created_at"].isoformat()
    return row


def get(conn: psycopg.Connection, caller: Caller, identity: str) -> dict[str, Any]:
    """One dataset; an unknown id and another client's dataset look the same (not found)."""
    if not DIGEST.match(identity):
        raise UnknownDataset(f"no dataset {identity!r} (an id is 64 lowercase hex digits)")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(queries.GET_DATASET, {"id": identity}).fetchone()
        if row is None or not (caller.is_admin or row["client"] == caller.client):
            raise UnknownDataset(f"no dataset {identity}")
        row["analyses"] = [r["id"] for r in cur.execute(queries.DATASET_ANALYSES, row)]
    return _jsonable(row)


@dataclass(frozen=True)
class Filters:
    conditions: tuple[Condition, ...] = ()
    group: str | None = None
    created_by: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def cursor_of(dataset: dict[str, Any]) -> str:
    return f"{dataset['created_at']}|{dataset['id']}"


def parse_cursor(cursor: str) -> tuple[datetime, str]:
    stamp, _, identity = cursor.partition("|")
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        raise InvalidDataset(f"cursor {cursor!r} is not one this API gave out") from None
    if moment.tzinfo is None or not DIGEST.match(identity):
        raise InvalidDataset(f"cursor {cursor!r} is not one this API gave out")
    return moment, identity


def list_datasets(
    conn: psycopg.Connection,
    caller: Caller,
    filters: Filters,
    *,
    limit: int = 100,
    after: str | None = None,
) -> list[dict[str, Any]]:
    """The datasets the caller may read that match every filter, newest first."""
    after_at, after_id = parse_cursor(after) if after else (None, None)
    params: dict[str, Any] = {
        "client": None if caller.is_admin else caller.client,
        "group": filters.group,
        "created_by": filters.created_by,
        "since": filters.since,
        "until": filters.until,
        "after_at": after_at,
        "after_id": after_id,
        "limit": max(1, min(limit, MAX_PAGE)),
    }
    statement = sql.SQL(queries.LIST_DATASETS)
    for number, condition in enumerate(filters.conditions):
        name = f"c{number}"
        params[name] = condition.jsonpath()
        test = _EXCLUDES if condition.negated else _MATCHES
        statement += sql.SQL(test).format(sql.Placeholder(name))
    statement += sql.SQL(queries.LIST_ORDER)
    with conn.cursor(row_factory=dict_row) as cur:
        return [_jsonable(row) for row in cur.execute(statement, params)]


def manifest_of(files: Iterable[FileEntry]) -> tuple[str, bytes]:
    """The id and the canonical manifest bytes (stored under the id in the content store)."""
    entries = canonical(files)
    return dataset_id(entries), manifest_bytes(entries)
