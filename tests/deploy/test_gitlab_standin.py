"""The converge test's GitLab stand-in as an ID token issuer (no deploy needed): the discovery
document and keys a relying party reads, and the test-only minting of CI job ID tokens."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import httpx
import jwt
import pytest

from local.ports import free_port

SERVER = Path(__file__).parent / "substitutes/gitlab/server.py"
ISSUER = "https://gitlab.example.test"
MLFLOW = "https://mlflow.example.test"
ALICE = {"id": 7, "username": "alice", "email": "alice@example.test"}
WHOLE = {"user": ALICE, "project_path": "team-a/churn", "aud": MLFLOW}


def _module():
    spec = importlib.util.spec_from_file_location("gitlab_standin_server", SERVER)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


server = _module()


@pytest.fixture(scope="module")
def gitlab() -> str:
    """The stand-in on a loopback port, knowing an `api` token and a `read_api` one."""
    fake = server.DeployGitLab("http://localhost", ISSUER)
    fake.tokens["glpat-admin"] = {"name": "platform-deploy", "scopes": ["api", "create_runner"]}
    fake.tokens["glpat-reader"] = {"name": "reader", "scopes": ["read_api"]}
    port = free_port()
    threading.Thread(target=fake.serve, args=(port, "127.0.0.1"), daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(f"{url}/-/readiness", timeout=1)
            return url
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def mint(url: str, token: str | None, body: object) -> httpx.Response:
    headers = {"PRIVATE-TOKEN": token} if token else {}
    return httpx.post(f"{url}/-/ci-token", json=body, headers=headers, timeout=10)


def test_discovery_names_the_external_url_and_its_keys(gitlab: str) -> None:
    url = gitlab
    discovery = httpx.get(f"{url}/.well-known/openid-configuration").json()
    assert discovery["issuer"] == ISSUER
    assert discovery["jwks_uri"] == f"{ISSUER}/oauth/discovery/keys"
    keys = httpx.get(f"{url}/oauth/discovery/keys")
    assert keys.headers["cache-control"] == "max-age=86400, public, must-revalidate"
    [key] = keys.json()["keys"]
    assert {key["kty"], key["use"], key["alg"]} == {"RSA", "sig", "RS256"}
    assert "d" not in key  # no private part
    assert key["kid"]


def test_a_minted_ci_token_verifies_with_the_served_key(gitlab: str) -> None:
    url = gitlab
    answer = mint(url, "glpat-admin", WHOLE)
    assert answer.status_code == 201, answer.text
    token = answer.json()["token"]
    keys = jwt.PyJWKSet.from_dict(httpx.get(f"{url}/oauth/discovery/keys").json())
    key = next(k for k in keys.keys if k.key_id == jwt.get_unverified_header(token)["kid"])
    claims = jwt.decode(token, key, algorithms=["RS256"], audience=MLFLOW, issuer=ISSUER)
    assert claims["user_email"] == "alice@example.test"
    assert (claims["user_login"], claims["user_id"]) == ("alice", "7")
    assert claims["project_path"] == "team-a/churn"
    assert claims["namespace_path"] == "team-a"
    assert claims["sub"] == "project_path:team-a/churn:ref_type:branch:ref:main"
    assert claims["exp"] - claims["iat"] == 300
    assert isinstance(claims["runner_id"], int)
    assert "email" not in claims


def test_minting_needs_an_api_token_and_a_whole_request(gitlab: str) -> None:
    url = gitlab
    assert mint(url, None, WHOLE).status_code == 401
    assert mint(url, "glpat-unknown", WHOLE).status_code == 401
    assert mint(url, "glpat-reader", WHOLE).status_code == 403
    for broken in ({"project_path": "team-a/churn", "aud": MLFLOW}, {**WHOLE, "user": "alice"}, []):
        answer = mint(url, "glpat-admin", broken)
        assert answer.status_code == 400, answer.text


def test_the_issuer_is_omnibus_external_url(tmp_path: Path) -> None:
    (tmp_path / "omnibus_config.rb").write_text(
        "# comment\nexternal_url 'https://gitlab.example.test/'\nletsencrypt['enable'] = false\n"
    )
    environment = {"GITLAB_OMNIBUS_CONFIG": "from_file('/omnibus_config.rb')"}
    assert server.external_url(environment, tmp_path) == ISSUER
    inline = {"GITLAB_OMNIBUS_CONFIG": "external_url 'https://git.example.test'"}
    assert server.external_url(inline) == "https://git.example.test"
    with pytest.raises(SystemExit, match="no external_url"):
        server.external_url({})
