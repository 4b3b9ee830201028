"""The rendered backup and restore commands dump real PostgreSQL data and restore it elsewhere.

`docker compose exec -T -u postgres <service> <tool> ...` is the only thing stood in for: a
small `docker` on PATH runs the same client tool against a local server (the session's server
as the backed-up one, a throwaway server as the restore target).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from local.postgres import SUPERUSER, LocalPostgres
from tests.fixtures.postgres import create_database
from tests.fixtures.provisioning import Render

FAKE_DOCKER = """#!/usr/bin/env bash
# docker compose --project-directory DIR exec -T -u postgres SERVICE TOOL ARGS...
set -euo pipefail
while [[ $# -gt 0 && $1 != exec ]]; do shift; done
shift
[[ $1 == -T ]] && shift
[[ $1 == -u ]] && shift 2
service=${1//-/_}
shift
target="FAKE_PG_${service}"
read -r PGHOST PGPORT PGPASSWORD <<<"${!target}"
export PGHOST PGPORT PGPASSWORD PGUSER=platform
exec "$@"
"""


def server_env(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname} {parts.port} {parts.password}"


def run(script: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, check=False, env=env
    )


def test_postgres_dumps_restore_into_a_throwaway_server(
    example_render: Render, postgres: LocalPostgres, tmp_path: Path
) -> None:
    source_url = create_database(postgres)
    source_db = urlsplit(source_url).path.lstrip("/")
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS backup_probe_owner")
        conn.execute("CREATE ROLE backup_probe_owner")
        conn.execute("CREATE TABLE measurements (id int PRIMARY KEY, label text)")
        conn.execute(
            "INSERT INTO measurements SELECT g, 'row ' || g FROM generate_series(1, 500) g"
        )
        conn.execute("ALTER TABLE measurements OWNER TO backup_probe_owner")

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    scripts = example_render.host("svc-01") / "opt/platform/bin"
    staging, stamp = tmp_path / "staging", "20260101T000000Z"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "COMPOSE_DIR": str(tmp_path),
        "BACKUP_STAGING": str(staging),
        "BACKUP_STAMP": stamp,
        "FAKE_PG_postgres_service": server_env(source_url),
        "FAKE_PG_postgres_data": server_env(source_url),
    }
    backup = run(scripts / "platform-backup", "postgres", env=env)
    assert backup.returncode == 0, backup.stderr
    dumps = staging / stamp / "postgres-service"
    assert (dumps / "globals.sql").read_text().count("backup_probe_owner") >= 1
    assert (dumps / f"{source_db}.dump").stat().st_size > 0
    assert (staging / stamp / "postgres-data" / f"{source_db}.dump").is_file()
    assert f"./postgres-service/{source_db}.dump" in (staging / stamp / "SHA256SUMS").read_text()
    assert all(p.stat().st_mode & 0o077 == 0 for p in dumps.iterdir())

    # The server runs as the `postgres` user: its folder must be reachable by that user.
    target_base = Path(tempfile.mkdtemp(prefix="restore-target-"))
    target_base.chmod(0o755)
    target = LocalPostgres(target_base / "cluster")
    target.start()
    try:
        # The dump's roles carry the source's passwords, as a real restore should: give the
        # throwaway server's superuser the source's password first so both keep working.
        with psycopg.connect(target.url(), autocommit=True) as conn:
            conn.execute(f"ALTER ROLE {SUPERUSER} PASSWORD '{urlsplit(source_url).password}'")
        target_url = (
            f"postgresql://{SUPERUSER}:{urlsplit(source_url).password}@127.0.0.1:{target.port}"
        )
        restore_env = {**env, "FAKE_PG_postgres_service": server_env(target_url + "/postgres")}
        restore = run(
            scripts / "platform-restore-postgres", "postgres-service", str(dumps), env=restore_env
        )
        assert restore.returncode == 0, restore.stderr
        with psycopg.connect(f"{target_url}/{source_db}") as conn:
            rows = conn.execute("SELECT count(*), max(label) FROM measurements").fetchone()
            owner = conn.execute(
                "SELECT tableowner FROM pg_tables WHERE tablename = 'measurements'"
            ).fetchone()
        assert rows == (500, "row 99")
        assert owner == ("backup_probe_owner",)
    finally:
        target.destroy()
        target_base.rmdir()
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {source_db}")
            conn.execute("DROP ROLE backup_probe_owner")
