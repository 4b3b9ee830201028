"""Who may read what: the admin sees all, a client only itself (403), unknown things 404."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient

from bridge.auth import add_client, token_digest
from tests.bridge.helpers import post_event
from tests.bridge.payloads import CPU_RUNNER, job_event
from tests.fixtures.bridge import ADMIN_TOKEN

END = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)

REQUESTS = [
    "/api/v1/usage?client=acme&period=2026-10",
    "/api/v1/usage?client=beta-lab&period=2026-10",
    "/api/v1/invoices/acme/2026-10",
    "/api/v1/invoices/beta-lab/2026-10",
    "/api/v1/jobs",
    "/api/v1/jobs?client=beta-lab",
    "/api/v1/jobs/1",
    "/api/v1/jobs/2",
    "/api/v1/jobs/999",
    "/api/v1/usage?client=nobody&period=2026-10",
]
EXPECTED = {
    "admin": [200, 200, 200, 200, 200, 200, 200, 200, 404, 404],
    "acme": [200, 403, 200, 403, 200, 403, 200, 403, 404, 403],
    "beta-lab": [403, 200, 403, 200, 200, 200, 403, 200, 404, 403],
    "no token": [401] * 10,
    "unknown token": [401] * 10,
    "not bearer": [401] * 10,
}


@pytest.fixture
def tokens(api: TestClient, db: psycopg.Connection) -> dict[str, dict[str, str]]:
    post_event(api, job_event(1, "success", runner=CPU_RUNNER, finished=END, duration=60.0))
    post_event(api, job_event(2, "success", runner=CPU_RUNNER, finished=END, duration=60.0,
                              project="beta-lab/study"))  # fmt: skip
    with db.transaction():
        acme, beta = add_client(db, "acme"), add_client(db, "beta-lab")
    return {
        "admin": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
        "acme": {"Authorization": f"Bearer {acme}"},
        "beta-lab": {"Authorization": f"Bearer {beta}"},
        "no token": {},
        "unknown token": {"Authorization": "Bearer bct_not-a-real-token"},
        "not bearer": {"Authorization": f"Basic {ADMIN_TOKEN}"},
    }


@pytest.mark.parametrize("caller", list(EXPECTED))
def test_authorization_matrix(api: TestClient, tokens: dict, caller: str) -> None:
    statuses = [api.get(path, headers=tokens[caller]).status_code for path in REQUESTS]
    assert statuses == EXPECTED[caller]


def test_client_token_lists_only_its_own_jobs(api: TestClient, tokens: dict) -> None:
    listed = api.get("/api/v1/jobs", headers=tokens["acme"]).json()["jobs"]
    assert [job["id"] for job in listed] == [1]
    everything = api.get("/api/v1/jobs", headers=tokens["admin"]).json()["jobs"]
    assert [job["id"] for job in everything] == [2, 1]


def test_forbidden_uses_the_error_envelope(api: TestClient, tokens: dict) -> None:
    response = api.get("/api/v1/invoices/beta-lab/2026-10", headers=tokens["acme"])
    assert response.json() == {
        "error": {
            "code": "forbidden",
            "message": "a client token only sees its own client (acme)",
            "request_id": response.headers["x-request-id"],
        }
    }


def test_only_the_token_hash_is_stored(db: psycopg.Connection, tokens: dict) -> None:
    token = tokens["acme"]["Authorization"].removeprefix("Bearer ")
    stored = db.execute("SELECT token_hash FROM clients WHERE slug = 'acme'").fetchone()[0]
    assert stored == token_digest(token)
    assert token not in str(db.execute("SELECT * FROM clients").fetchall())


def test_jobs_pagination(api: TestClient, tokens: dict) -> None:
    for build_id in range(10, 25):
        post_event(api, job_event(build_id, "pending"))
    pages, before = [], None
    while True:
        query = "/api/v1/jobs?limit=6" + (f"&before={before}" if before else "")
        body = api.get(query, headers=tokens["admin"]).json()
        pages.append([job["id"] for job in body["jobs"]])
        before = body["next_before"]
        if before is None:
            break
    assert [job for page in pages for job in page] == [*range(24, 9, -1), 2, 1]
    assert [len(page) for page in pages] == [6, 6, 5]
