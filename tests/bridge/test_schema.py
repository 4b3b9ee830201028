"""Migrations: applied once, recorded, and building exactly the declared schema."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import psycopg
from click.testing import CliRunner

from bridge.cli import main
from bridge.storage import migrate
from local.postgres import LocalPostgres
from tests.fixtures.postgres import create_database

DECLARED = Path(__file__).parents[2] / "bridge" / "storage" / "schema.sql"
# pg_dump noise that says nothing about the schema (and \restrict carries a random key).
_NOISE = re.compile(r"^(--.*|SET .*|SELECT pg_catalog\.set_config.*|\\(un)?restrict .*|)$")


def without_noise(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not _NOISE.match(line)) + "\n"


def dump_schema(url: str) -> str:
    pg_dump = next(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))
    dumped = subprocess.run(
        [pg_dump, "--schema-only", "--no-owner", "--no-privileges", url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return without_noise(dumped)


def test_migrations_build_the_declared_schema(postgres: LocalPostgres, tmp_path: Path) -> None:
    url = create_database(postgres)
    with psycopg.connect(url) as conn:
        migrate.migrate(conn)
    actual = dump_schema(url)
    if actual != without_noise(DECLARED.read_text()):
        (tmp_path / "schema.sql").write_text(actual)
        raise AssertionError(
            f"migrations and {DECLARED} differ; if the migration is intended, review and "
            f"copy {tmp_path / 'schema.sql'} over it"
        )


def test_migrate_twice_is_a_noop(postgres: LocalPostgres) -> None:
    env = {"BRIDGE_DATABASE_URL": create_database(postgres)}
    first = CliRunner().invoke(main, ["migrate"], env=env)
    second = CliRunner().invoke(main, ["migrate"], env=env)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines() == [
        f"applied {m.version:04d}_{m.name}" for m in migrate.available()
    ]
    assert second.exit_code == 0
    assert second.stdout == "database schema is up to date\n"
    with psycopg.connect(env["BRIDGE_DATABASE_URL"]) as conn:
        recorded = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [v for (v,) in recorded] == [m.version for m in migrate.available()]


def test_cli_errors_are_one_line_without_traceback(postgres: LocalPostgres) -> None:
    unset = CliRunner().invoke(main, ["migrate"], env={"BRIDGE_DATABASE_URL": ""})
    assert unset.exit_code == 1
    assert unset.output.startswith("Error: missing configuration: BRIDGE_DATABASE_URL")
    unreachable = CliRunner().invoke(
        main, ["migrate"], env={"BRIDGE_DATABASE_URL": "postgresql://x:y@127.0.0.1:1/none"}
    )
    assert unreachable.exit_code == 1
    assert "Error: connection failed" in unreachable.output
    assert "Traceback" not in unset.output + unreachable.output
