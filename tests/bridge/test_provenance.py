"""Run provenance: CI ID-token checks, `POST /api/v1/runs`, and the chain in `GET /jobs/{id}`.

The signing keys are generated here; their JWKS is served by a real HTTP server on loopback
whose keys can be rotated, whose answers can be broken and whose fetches are counted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from bridge.api.app import create_app
from bridge.auth import add_client
from bridge.provenance import MAX_RUN_REPORTS, SigningKeys, SigningKeysUnavailable, TokenRejected
from bridge.settings import Settings
from local.issuer import gitlab_claims, public_jwk
from local.ports import free_port
from tests.bridge.fuzz import encoded, mutations
from tests.bridge.helpers import admin, post_event
from tests.bridge.payloads import CPU_RUNNER, job_event
from tests.fixtures.bridge import GITLAB_URL

AUDIENCE = "https://bridge.example.com"  # BRIDGE_PUBLIC_URL of the test bridge
PROJECT = "acme-vision/retina"  # bills to client "acme" through the rates file's clients:
JOB_ID, PIPELINE_ID = 1001, 77
SHA = "3f" * 20
DIGEST = "a1" * 32
DATA_DIGEST = "b2" * 32
REPORT: dict[str, Any] = {
    "mlflow_run_id": "0123456789abcdef0123456789abcdef",
    "mlflow_experiment_id": "4",
    "mlflow_tracking_uri": "https://mlflow.example.com/",
    "image": f"registry.example.com/platform/environments/python-ml@sha256:{DIGEST}",
    "template": "train",
    "template_version": "1.2.0",
    "datasets": [
        {
            "name": "cells.csv",
            "uri": f"s3://datasets/sha256/{DATA_DIGEST}",
            "sha256": DATA_DIGEST,
            "size": 124_000,
        }
    ],
    "params": {"C": "0.5", "seed": "42"},
    "job_id": JOB_ID,
    "pipeline_id": PIPELINE_ID,
    "project_path": PROJECT,
    "sha": SHA,
}


@pytest.fixture(scope="session")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    """GitLab's current key, the key it rotates to, and a key GitLab never published."""
    return {
        name: rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for name in ("current", "next", "stranger")
    }


def kid(key: rsa.RSAPrivateKey) -> str:
    return public_jwk(key)["kid"]


class JwksServer:
    """GitLab's `/oauth/discovery/keys` on loopback: serves `published`, counts fetches, and
    answers `status`/`body` instead when a test breaks it."""

    def __init__(self, published: list[rsa.RSAPrivateKey]) -> None:
        self.published = published
        self.fetches = 0
        self.status = 200
        self.body: bytes | None = None
        self.delay = 0.0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/oauth/discovery/keys"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                time.sleep(jwks.delay)
                body = jwks.body
                if body is None:
                    body = json.dumps({"keys": [public_jwk(k) for k in jwks.published]}).encode()
                self.send_response(jwks.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def jwks(keys: dict[str, rsa.RSAPrivateKey]) -> Iterator[JwksServer]:
    server = JwksServer([keys["current"]])
    # A short poll interval: shutdown() waits for the next poll.
    thread = threading.Thread(target=server.server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def run_settings(bridge_env: dict[str, str], jwks: JwksServer) -> Settings:
    return Settings.from_env({**bridge_env, "BRIDGE_JWKS_URL": jwks.url})


@pytest.fixture
def runs_api(run_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(run_settings)) as client:
        yield client


def mint(key: rsa.RSAPrivateKey, *, headers: dict[str, Any] | None = None, **claims: Any) -> str:
    """An ID token shaped as GitLab mints it (ids as strings); a claim given as None is left
    out."""
    now = int(time.time())
    payload = {
        **gitlab_claims(job_id=JOB_ID, project_path=PROJECT, pipeline_id=PIPELINE_ID, sha=SHA),
        "iss": GITLAB_URL,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "7d9c3e52-5b1e-4b8e-9a51-3c2b4f0e6a11",
    }
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key, algorithm="RS256", headers=headers or {"kid": kid(key)})


def post_run(client: TestClient, token: str | None, body: Any = REPORT) -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/api/v1/runs", content=content, headers=headers)


def stored_runs(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) FROM runs").fetchone()[0]


# --- recording and reading back ----------------------------------------------------------


def test_a_run_is_recorded_and_its_job_shows_the_whole_chain(
    runs_api: TestClient, keys: dict, db: psycopg.Connection
) -> None:
    token = mint(keys["current"])

    recorded = post_run(runs_api, token)

    assert recorded.status_code == 201, recorded.text
    assert recorded.json() == {"result": "recorded", "job_id": JOB_ID}
    job = admin(runs_api, f"/api/v1/jobs/{JOB_ID}").json()
    # Known so far only from the run (the webhook comes when the job ends).
    assert job["status"] is None
    assert (job["id"], job["project_path"], job["client"]) == (JOB_ID, PROJECT, "acme")
    assert (job["pipeline_id"], job["sha"], job["runner_id"]) == (PIPELINE_ID, SHA, 1)
    chain = job["provenance"]
    assert (chain["pipeline_id"], chain["sha"], chain["ref"]) == (PIPELINE_ID, SHA, "main")
    assert chain["mlflow"] == {
        "run_id": REPORT["mlflow_run_id"],
        "experiment_id": "4",
        "tracking_uri": "https://mlflow.example.com/",
        "run_url": f"https://mlflow.example.com/#/experiments/4/runs/{REPORT['mlflow_run_id']}",
    }
    assert chain["image"] == REPORT["image"]
    assert chain["image_digest"] == f"sha256:{DIGEST}"
    assert chain["template"] == {
        "name": "train",
        "version": "1.2.0",
        "sha": None,
        "reference": None,
    }
    assert chain["datasets"] == REPORT["datasets"]
    assert chain["params"] == {"C": "0.5", "seed": "42"}
    assert chain["later_posts"] == []
    everything_stored = db.execute("SELECT json_agg(runs)::text FROM runs").fetchone()[0]
    assert token not in everything_stored, "the bearer token itself is never stored"


def test_a_shell_job_records_its_runtime_and_no_image(
    runs_api: TestClient, keys: dict, db: psycopg.Connection
) -> None:
    body = {k: v for k, v in REPORT.items() if k != "image"}
    body.update(runtime=SHELL_RUNTIME, template_version=None, template_reference="main")

    recorded = post_run(runs_api, mint(keys["current"]), body)

    assert recorded.status_code == 201, recorded.text
    chain = admin(runs_api, f"/api/v1/jobs/{JOB_ID}").json()["provenance"]
    assert (chain["image"], chain["image_digest"]) == (None, None)
    assert chain["runtime"] == SHELL_RUNTIME
    assert chain["template"]["version"] is None
    assert chain["template"]["reference"] == "main"


def test_the_job_webhook_after_the_run_joins_the_ledger(runs_api: TestClient, keys: dict) -> None:
    assert post_run(runs_api, mint(keys["current"])).status_code == 201

    post_event(runs_api, job_event(JOB_ID, "success", project=PROJECT, runner=CPU_RUNNER,
                                   pipeline_id=PIPELINE_ID, duration=90.0))  # fmt: skip

    job = admin(runs_api, f"/api/v1/jobs/{JOB_ID}").json()
    assert (job["status"], job["billable_seconds"], job["client"]) == ("success", "90.0", "acme")
    assert job["provenance"]["mlflow"]["run_id"] == REPORT["mlflow_run_id"]


def test_a_ledger_job_without_a_run_has_no_provenance(runs_api: TestClient) -> None:
    post_event(runs_api, job_event(5, "success", runner=CPU_RUNNER, duration=10.0))

    assert admin(runs_api, "/api/v1/jobs/5").json()["provenance"] is None


def test_an_identical_repeat_is_a_duplicate(
    runs_api: TestClient, keys: dict, db: psycopg.Connection
) -> None:
    token = mint(keys["current"])
    assert post_run(runs_api, token).status_code == 201

    again = post_run(runs_api, token)

    assert again.status_code == 200
    assert again.json() == {"result": "duplicate", "job_id": JOB_ID}
    assert stored_runs(db) == 1


def test_a_different_later_report_is_kept_but_the_first_stands(
    runs_api: TestClient, keys: dict, db: psycopg.Connection
) -> None:
    token = mint(keys["current"])
    assert post_run(runs_api, token).status_code == 201
    other = {**REPORT, "mlflow_run_id": "ffffffffffffffffffffffffffffffff"}

    conflicting = post_run(runs_api, token, other)
    repeated = post_run(runs_api, token, other)

    for answer in (conflicting, repeated):
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "run_conflict"
        assert "the first record stands" in answer.json()["error"]["message"]
    chain = admin(runs_api, f"/api/v1/jobs/{JOB_ID}").json()["provenance"]
    assert chain["mlflow"]["run_id"] == REPORT["mlflow_run_id"]
    assert [p["mlflow"]["run_id"] for p in chain["later_posts"]] == [other["mlflow_run_id"]]
    assert stored_runs(db) == 2


def test_a_job_keeps_a_bounded_number_of_distinct_reports_and_counts_the_rest(
    runs_api: TestClient, keys: dict, db: psycopg.Connection
) -> None:
    token = mint(keys["current"])
    reports = [{**REPORT, "params": {"attempt": str(n)}} for n in range(12)]
    answers = [post_run(runs_api, token, report).status_code for report in reports]
    assert answers == [201] + [409] * 11
    assert post_run(runs_api, token, reports[-1]).status_code == 409
    assert stored_runs(db) == MAX_RUN_REPORTS
    chain = admin(runs_api, f"/api/v1/jobs/{JOB_ID}").json()["provenance"]
    assert chain["params"] == {"attempt": "0"}, "the first report stands"
    assert [p["params"] for p in chain["later_posts"]] == [
        {"attempt": str(n)} for n in range(1, MAX_RUN_REPORTS)
    ]
    assert chain["later_posts_not_kept"] == 12 + 1 - MAX_RUN_REPORTS


def test_identity_comes_from_the_token_when_the_body_omits_it(
    runs_api: TestClient, keys: dict
) -> None:
    body = {k: v for k, v in REPORT.items() if k not in {"job_id", "pipeline_id", "sha"}}
    body.pop("project_path")
    token = mint(keys["current"], job_id="1002", pipeline_id="78", runner_id=31)

    assert post_run(runs_api, token, body).json() == {"result": "recorded", "job_id": 1002}

    job = admin(runs_api, "/api/v1/jobs/1002").json()
    assert (job["pipeline_id"], job["runner_id"], job["sha"]) == (78, 31, SHA)


def test_ids_compare_as_numbers_whether_claims_are_strings_or_ints(
    runs_api: TestClient, keys: dict
) -> None:
    as_ints = mint(keys["current"], job_id=JOB_ID, pipeline_id=PIPELINE_ID, project_id=3)

    assert post_run(runs_api, as_ints).status_code == 201


@pytest.mark.parametrize(
    ("field", "stated"),
    [("job_id", 999), ("pipeline_id", 1), ("project_path", "beta-lab/other"), ("sha", "0" * 40)],
)
def test_a_body_that_contradicts_the_token_is_refused_naming_the_field(
    runs_api: TestClient, keys: dict, db: psycopg.Connection, field: str, stated: Any
) -> None:
    answer = post_run(runs_api, mint(keys["current"]), {**REPORT, field: stated})

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "contradicts_token"
    assert f"{field}: the body says {stated!r}" in error["message"]
    assert stored_runs(db) == 0


# --- the token ---------------------------------------------------------------------------

# Claims as functions of the current time, so they hold however long the session runs.
REJECTED_CLAIMS = {
    "expired": (lambda now: {"exp": now - 120, "iat": now - 600, "nbf": now - 600},
                "token expired"),
    "not yet valid": (lambda now: {"nbf": now + 600, "iat": now + 600}, "token not valid yet"),
    "wrong audience": (lambda now: {"aud": "https://other.example.com"}, "wrong audience"),
    "audience list without ours": (lambda now: {"aud": ["https://a.example", "https://b.example"]},
                                   "wrong audience"),
    "wrong issuer": (lambda now: {"iss": "https://gitlab.evil.example"}, "wrong issuer"),
    "issuer with a trailing slash": (lambda now: {"iss": GITLAB_URL + "/"}, "wrong issuer"),
    "no job id": (lambda now: {"job_id": None}, "no job_id claim"),
    "job id not a number": (lambda now: {"job_id": "12a"}, "claim job_id is not a number"),
    "no expiry": (lambda now: {"exp": None}, 'missing the "exp" claim'),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REJECTED_CLAIMS))
def test_tokens_with_bad_claims_are_401_saying_which(
    runs_api: TestClient, keys: dict, db: psycopg.Connection, case: str
) -> None:
    claims, reason = REJECTED_CLAIMS[case]

    answer = post_run(runs_api, mint(keys["current"], **claims(int(time.time()))))

    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_id_token"
    assert reason in answer.json()["error"]["message"]
    assert stored_runs(db) == 0


def _forged(keys: dict[str, rsa.RSAPrivateKey], case: str) -> str:
    stranger, current = keys["stranger"], keys["current"]
    if case == "bad signature":
        return mint(stranger, headers={"kid": kid(current)})
    if case == "unknown kid":
        return mint(stranger)
    if case == "no kid":
        return mint(current, headers={"typ": "JWT"})
    if case == "HS256":
        payload = jwt.decode(mint(current), options={"verify_signature": False})
        return jwt.encode(payload, "s" * 64, algorithm="HS256", headers={"kid": kid(current)})
    if case == "alg none":
        payload = jwt.decode(mint(current), options={"verify_signature": False})
        return jwt.encode(payload, None, algorithm="none")
    return {"malformed": "not-a-jwt", "not base64": "a.b.c"}[case]


FORGED = {
    "bad signature": "bad signature",
    "unknown kid": "unknown signing key",
    "no kid": "names no signing key",
    "HS256": "algorithm 'HS256' refused",
    "alg none": "algorithm 'none' refused",
    "malformed": "malformed token",
    "not base64": "malformed token",
}


@pytest.mark.parametrize("case", list(FORGED))
def test_forged_or_malformed_tokens_are_401_saying_which(
    runs_api: TestClient, keys: dict, db: psycopg.Connection, case: str
) -> None:
    answer = post_run(runs_api, _forged(keys, case))

    assert answer.status_code == 401
    assert FORGED[case] in answer.json()["error"]["message"]
    assert stored_runs(db) == 0


def test_clock_skew_within_the_leeway_is_accepted(runs_api: TestClient, keys: dict) -> None:
    token = mint(keys["current"], exp=int(time.time()) - 10, nbf=int(time.time()) + 10)

    assert post_run(runs_api, token).status_code == 201


def test_without_a_bearer_token_it_is_401_before_the_body_is_read(runs_api: TestClient) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}):
        answer = runs_api.post("/api/v1/runs", content=b"{not json", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthorized"


# --- the signing keys ----------------------------------------------------------------------


def test_keys_are_cached(runs_api: TestClient, keys: dict, jwks: JwksServer) -> None:
    # An empty body: refused (422) after the token was verified, which is all this needs.
    for job in (1, 2, 3):
        assert post_run(runs_api, mint(keys["current"], job_id=str(job)), {}).status_code == 422
    assert jwks.fetches == 1


def test_a_rotated_key_is_fetched_and_the_retired_one_refused(
    runs_api: TestClient, keys: dict, jwks: JwksServer
) -> None:
    assert post_run(runs_api, mint(keys["current"])).status_code == 201
    jwks.published = [keys["next"]]

    rotated = post_run(runs_api, mint(keys["next"], job_id="1002"), {**REPORT, "job_id": 1002})
    retired = post_run(runs_api, mint(keys["current"], job_id="1003"))

    assert rotated.status_code == 201, rotated.text
    assert jwks.fetches == 2
    assert retired.status_code == 401
    assert "unknown signing key" in retired.json()["error"]["message"]


def test_made_up_kids_refetch_at_most_once_per_cooldown(
    runs_api: TestClient, keys: dict, jwks: JwksServer
) -> None:
    assert post_run(runs_api, mint(keys["current"])).status_code == 201
    for made_up in ("kid-1", "kid-2", "kid-3"):
        answer = post_run(runs_api, mint(keys["stranger"], headers={"kid": made_up}))
        assert answer.status_code == 401
    assert jwks.fetches == 2


BROKEN_JWKS = {
    "server error": (500, None, "answered HTTP 500"),
    "not json": (200, b"<html>sign in</html>", "did not answer with JSON"),
    "no usable key": (200, b'{"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}',
                      "lists no RS256 signing key"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BROKEN_JWKS))
def test_unusable_signing_keys_are_503_not_401(
    runs_api: TestClient, keys: dict, jwks: JwksServer, case: str
) -> None:
    jwks.status, jwks.body, reason = BROKEN_JWKS[case]

    answer = post_run(runs_api, mint(keys["current"]))

    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "signing_keys_unavailable"
    assert reason in answer.json()["error"]["message"]


def test_unreachable_gitlab_is_503_naming_the_url(bridge_env: dict, keys: dict) -> None:
    url = f"http://127.0.0.1:{free_port()}/oauth/discovery/keys"
    settings = Settings.from_env({**bridge_env, "BRIDGE_JWKS_URL": url})
    with TestClient(create_app(settings)) as client:
        answer = post_run(client, mint(keys["current"]))
    assert answer.status_code == 503
    assert f"cannot fetch the ID-token signing keys from {url}" in answer.json()["error"]["message"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_known_keys_keep_verifying_while_gitlab_is_unreachable(
    keys: dict, jwks: JwksServer
) -> None:
    clock = Clock()
    cache = SigningKeys(jwks.url, lifespan=60, cooldown=5, clock=clock)
    current = cache.get(kid(keys["current"]))

    jwks.status = 502
    clock.now += 61  # the cached set is stale; the refetch fails
    assert cache.get(kid(keys["current"])) is current
    with pytest.raises(SigningKeysUnavailable, match="answered HTTP 502"):
        cache.get("a-kid-we-cannot-check-now")
    assert jwks.fetches == 2, "no new attempt during the cooldown"

    jwks.status = 200
    clock.now += 6
    assert cache.get(kid(keys["current"])) is not current, "refreshed once GitLab is back"
    for made_up in ("kid-1", "kid-2"):
        with pytest.raises(TokenRejected, match="unknown signing key"):
            cache.get(made_up)
    assert jwks.fetches == 4, "one refetch for the first unknown kid, none in its cooldown"


def test_a_hanging_jwks_endpoint_times_out(keys: dict, jwks: JwksServer) -> None:
    jwks.delay = 2.0
    cache = SigningKeys(jwks.url, timeout=0.2)

    with pytest.raises(SigningKeysUnavailable, match="timed out"):
        cache.get(kid(keys["current"]))


# --- the body ----------------------------------------------------------------------------

SHELL_RUNTIME = {"executor": "shell", "python": "3.11.7", "packages_sha256": "c" * 64}

INVALID_BODIES = {
    "id as a string": ({**REPORT, "job_id": str(JOB_ID)},
                       "job_id: Input should be a valid integer"),
    "param not a string": ({**REPORT, "params": {"C": 0.5}},
                           "params.C: Input should be a valid string"),
    "unknown field": ({**REPORT, "status": "ok"}, "status: Extra inputs are not permitted"),
    "bad dataset digest": ({**REPORT, "datasets": [{**REPORT["datasets"][0], "sha256": "abc"}]},
                           "datasets.0.sha256: String should match pattern"),
    "image by tag": ({**REPORT, "image": "python:3.12"}, "image: String should match pattern"),
    "no image, not shell": ({k: v for k, v in REPORT.items() if k != "image"},
                            "image: required unless runtime.executor is shell"),
    "image from a shell job": ({**REPORT, "runtime": SHELL_RUNTIME},
                               "a job of the shell executor ran in no image"),
    "tracking uri not http": ({**REPORT, "mlflow_tracking_uri": "file:///tmp/mlruns"},
                              "mlflow_tracking_uri: Value error, must be an http(s) URL"),
    "no run id": ({k: v for k, v in REPORT.items() if k != "mlflow_run_id"},
                  "mlflow_run_id: Field required"),
    "not an object": ([REPORT], "Input should be an object"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(INVALID_BODIES))
def test_invalid_bodies_are_422_naming_the_field(
    runs_api: TestClient, keys: dict, db: psycopg.Connection, case: str
) -> None:
    body, problem = INVALID_BODIES[case]

    answer = post_run(runs_api, mint(keys["current"]), body)

    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_request"
    assert problem in answer.json()["error"]["message"]
    assert stored_runs(db) == 0


def test_a_body_that_is_not_json_is_400(runs_api: TestClient, keys: dict) -> None:
    answer = post_run(runs_api, mint(keys["current"]), b'{"mlflow_run_id": ')

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "malformed_json"


def test_an_oversized_body_is_413(runs_api: TestClient, keys: dict) -> None:
    params = {f"p{i}": "x" * 6000 for i in range(200)}

    answer = post_run(runs_api, mint(keys["current"]), {**REPORT, "params": params})

    assert answer.status_code == 413


def test_credentials_in_the_tracking_uri_are_not_kept(
    runs_api: TestClient, keys: dict, db: psycopg.Connection
) -> None:
    body = {**REPORT, "mlflow_tracking_uri": "https://ci:s3cret@mlflow.example.com:8443/"}

    assert post_run(runs_api, mint(keys["current"]), body).status_code == 201

    mlflow = admin(runs_api, f"/api/v1/jobs/{JOB_ID}").json()["provenance"]["mlflow"]
    assert mlflow["tracking_uri"] == "https://mlflow.example.com:8443/"
    assert "s3cret" not in db.execute("SELECT json_agg(runs)::text FROM runs").fetchone()[0]


# --- who may read it, and failures ---------------------------------------------------------


def test_a_client_token_sees_only_its_own_runs(
    runs_api: TestClient, keys: dict, db: psycopg.Connection
) -> None:
    with db.transaction():
        tokens = {slug: add_client(db, slug) for slug in ("acme", "beta-lab")}
    assert post_run(runs_api, mint(keys["current"])).status_code == 201
    beta = {"job_id": 2001, "project_path": "beta-lab/study"}
    token = mint(keys["current"], **{**beta, "job_id": "2001", "namespace_path": "beta-lab"})
    assert post_run(runs_api, token, {**REPORT, **beta}).status_code == 201

    def status(token: str, job: int) -> int:
        return runs_api.get(
            f"/api/v1/jobs/{job}", headers={"Authorization": f"Bearer {token}"}
        ).status_code

    assert [status(tokens["acme"], job) for job in (JOB_ID, 2001, 3001)] == [200, 403, 404]
    assert [status(tokens["beta-lab"], job) for job in (JOB_ID, 2001, 3001)] == [403, 200, 404]
    assert runs_api.get(f"/api/v1/jobs/{JOB_ID}").status_code == 401


def test_a_database_outage_is_503(bridge_env: dict, jwks: JwksServer, keys: dict) -> None:
    down = f"postgresql://bridge:x@127.0.0.1:{free_port()}/bridge"
    settings = Settings.from_env(
        {**bridge_env, "BRIDGE_JWKS_URL": jwks.url, "BRIDGE_DATABASE_URL": down}
    )
    with TestClient(create_app(settings)) as client:
        answer = post_run(client, mint(keys["current"]))
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "database_unavailable"


def test_without_an_audience_run_provenance_is_off(
    bridge_env: dict, jwks: JwksServer, keys: dict
) -> None:
    env = {k: v for k, v in bridge_env.items() if k != "BRIDGE_PUBLIC_URL"}
    settings = Settings.from_env({**env, "BRIDGE_JWKS_URL": jwks.url})
    with TestClient(create_app(settings)) as client:
        answer = post_run(client, mint(keys["current"]))
    assert answer.status_code == 503
    assert "missing configuration: BRIDGE_PUBLIC_URL" in answer.json()["error"]["message"]


def test_openapi_documents_the_run_body(runs_api: TestClient) -> None:
    operation = runs_api.get("/openapi.json").json()["paths"]["/api/v1/runs"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"mlflow_run_id", "image", "template_version", "datasets"} <= set(schema["properties"])
    assert "sha256" in schema["properties"]["datasets"]["items"]["properties"]
    assert "$defs" not in json.dumps(schema)


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=mutations(REPORT))
def test_any_value_in_any_run_report_field_is_never_a_5xx(
    runs_api: TestClient, keys: dict, body: Any
) -> None:
    response = post_run(runs_api, mint(keys["current"]), encoded(body))
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "request_id"}
    job = admin(runs_api, f"/api/v1/jobs/{JOB_ID}")
    assert job.status_code in (200, 404), job.text
