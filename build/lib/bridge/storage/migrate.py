"""Versioned SQL migrations: `migrations/NNNN_name.sql`, applied in order, each recorded once.

Several bridge processes may start together (serve, reconcile, collectors' migrations in
CI...): an advisory lock makes exactly one of them apply what is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

# Any constant unique to this application; only has to differ from other users' locks.
_MIGRATION_LOCK = 0x6272_6964_6765  # "bridge"
_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """Every migration shipped with the package, in version order."""
    found = []
    for entry in resources.files("bridge.storage").joinpath("migrations").iterdir():
        match = _FILENAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    return found


def applied_versions(conn: psycopg.Connection) -> set[int]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return set()
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def pending(conn: psycopg.Connection) -> list[Migration]:
    done = applied_versions(conn)
    return [m for m in available() if m.version not in done]


def migrate(conn: psycopg.Connection) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; returns what was applied."""
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
    try:
        conn.execute(_CREATE_TABLE)
        applied = []
        for migration in pending(conn):
            with conn.transaction():
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            applied.append(migration)
        return applied
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
