"""One canonical client id, the lower-case GitLab group path (issue 9, defect 6).

GitLab paths are case-insensitive: a job of `AcmeLab/p` must be billable and readable as
client `acmelab` however an operator or a client spells it, through the API and the CLI,
and rows written before under `AcmeLab` move to `acmelab`.
"""

from __future__ import annotations

import json

import psycopg
from click.testing import CliRunner
from fastapi.testclient import TestClient

from bridge.cli import main
from bridge.storage import migrate
from local.postgres import LocalPostgres
from tests.bridge.helpers import admin, post_event
from tests.bridge.payloads import CPU_RUNNER, job_event
from tests.fixtures.postgres import create_database


def test_a_group_with_capitals_is_billed_and_read_under_one_client_id(
    api: TestClient, db: psycopg.Connection, bridge_env: dict[str, str]
) -> None:
    event = job_event(5, "success", project="AcmeLab/Segmentation", runner=CPU_RUNNER,
                      duration=120.0)  # fmt: skip
    assert post_event(api, event).json() == {"result": "recorded"}
    assert db.execute("SELECT client FROM jobs").fetchall() == [("acmelab",)]

    documents = [
        admin(api, f"/api/v1/usage?client={spelling}&period=2026-10")
        for spelling in ("AcmeLab", "acmelab", "ACMELAB")
    ]
    assert [d.status_code for d in documents] == [200, 200, 200], documents[0].text
    assert documents[0].json() == documents[1].json() == documents[2].json()
    assert documents[0].json()["client"] == "acmelab"
    assert documents[0].json()["lines"][0]["billable_seconds"] == "120"
    invoice = admin(api, "/api/v1/invoices/AcmeLab/2026-10")
    assert invoice.status_code == 200
    listed = admin(api, "/api/v1/jobs?client=AcmeLab").json()["jobs"]
    assert [job["id"] for job in listed] == [5]

    added = CliRunner().invoke(main, ["clients", "add", "AcmeLab"], env=bridge_env)
    assert added.exit_code == 0, added.output
    assert "client acmelab added" in added.stderr
    token = {"Authorization": f"Bearer {added.stdout.strip()}"}
    own = api.get("/api/v1/usage?client=AcmeLab&period=2026-10", headers=token)
    assert own.status_code == 200, own.text
    assert own.json() == documents[0].json()
    again = CliRunner().invoke(main, ["clients", "add", "ACMELAB"], env=bridge_env)
    assert again.exit_code == 1
    assert "already exists" in again.output

    for spelling in ("AcmeLab", "acmelab"):
        shown = CliRunner().invoke(
            main, ["usage", "--client", spelling, "--period", "2026-10", "--format", "json"],
            env=bridge_env,
        )  # fmt: skip
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout) == documents[0].json()


def test_groups_mapped_in_the_rates_file_are_matched_whatever_their_case(
    api: TestClient,
) -> None:
    # The test rates file maps acme-vision and acme-nlp to client acme.
    event = job_event(6, "success", project="ACME-Vision/x", runner=CPU_RUNNER, duration=60.0)
    assert post_event(api, event).status_code == 200
    document = admin(api, "/api/v1/usage?client=Acme-Vision&period=2026-10").json()
    assert document["client"] == "acme"
    assert document["lines"][0]["jobs"] == 1


def test_rows_written_under_a_spelling_with_capitals_are_migrated(
    postgres: LocalPostgres,
) -> None:
    url = create_database(postgres)
    earlier = [m for m in migrate.available() if m.version < 5]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in earlier:
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
        conn.execute(
            "INSERT INTO jobs (instance, build_id, project_path, client, status, status_rank) "
            "VALUES ('g', 1, 'AcmeLab/p', 'AcmeLab', 'success', 3)"
        )
        conn.execute(
            "INSERT INTO invoices (client, period, document, rates) "
            "VALUES ('AcmeLab', '2026-09', '{}', '{}')"
        )
        conn.execute(
            "INSERT INTO invoice_jobs (instance, build_id, client, period) "
            "VALUES ('g', 1, 'AcmeLab', '2026-09')"
        )
        applied = migrate.migrate(conn)
        assert [m.version for m in applied] == [m.version for m in migrate.available()
                                                if m.version >= 5]  # fmt: skip
        assert conn.execute("SELECT client FROM jobs").fetchall() == [("acmelab",)]
        assert conn.execute("SELECT client FROM invoices").fetchall() == [("acmelab",)]
        assert conn.execute("SELECT client FROM invoice_jobs").fetchall() == [("acmelab",)]
