"""A local CI ID-token issuer for local mode: an RSA key, its JWKS on loopback, and `mint()`.

In production GitLab signs each job's ID token (`id_tokens:`) and the bridge verifies it against
GitLab's JWKS. gitlab-ci-local mints no tokens, so local mode does it here with a key generated
on this machine; only a bridge started with `BRIDGE_JWKS_URL` pointing at this server (the
local one) trusts it. The key never leaves `state_dir` (mode 0600).

Serve: `python -m local.issuer --state-dir DIR --port PORT` (JWKS at
`/oauth/discovery/keys`, like GitLab).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from local.ports import free_port

JWKS_PATH = "/oauth/discovery/keys"


def load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    """The RSA key in `path`, generated (2048 bits, file mode 0600) on first use."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path} does not hold an RSA private key")
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return key


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """The public half as a JWK, `kid` = its RFC 7638 thumbprint (as GitLab's keys have)."""
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    thumbprint_input = json.dumps(
        {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(thumbprint_input.encode()).digest()
    kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def gitlab_claims(
    *,
    job_id: int,
    project_path: str,
    pipeline_id: int,
    sha: str,
    ref: str = "main",
    project_id: int = 1,
    runner_id: int = 1,
    user_login: str = "local",
) -> dict[str, Any]:
    """The custom claims GitLab puts in a job's ID token (gitlab-contracts.md section 2.2)."""
    namespace = project_path.rsplit("/", 1)[0]
    return {
        "sub": f"project_path:{project_path}:ref_type:branch:ref:{ref}",
        "namespace_id": "1",
        "namespace_path": namespace,
        "project_id": str(project_id),
        "project_path": project_path,
        "user_id": "1",
        "user_login": user_login,
        "pipeline_id": str(pipeline_id),
        "pipeline_source": "push",
        "job_id": str(job_id),
        "ref": ref,
        "ref_type": "branch",
        "ref_path": f"refs/heads/{ref}",
        "ref_protected": "false",
        "runner_id": runner_id,
        "runner_environment": "self-hosted",
        "sha": sha,
        "project_visibility": "internal",
    }


def sign_id_token(
    key: rsa.RSAPrivateKey, claims: dict[str, Any], *, issuer: str, audience: str, ttl: int
) -> str:
    """`claims` as an RS256 ID token from `issuer` for `audience`, valid `ttl` seconds from now,
    its `kid` the key's thumbprint (the JWKS names the key the same way)."""
    now = int(time.time())
    payload = {
        **claims,
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "nbf": now - 5,
        "exp": now + ttl,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": public_jwk(key)["kid"]})


@dataclass
class LocalIssuer:
    """Signs tokens as issuer `url`; serves the JWKS from `state_dir`'s key on 127.0.0.1:`port`."""

    state_dir: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        """The issuer (`iss`) and the base of the JWKS URL, like GitLab's external_url."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}{JWKS_PATH}"

    @property
    def key_file(self) -> Path:
        return self.state_dir / "id-token-signing-key.pem"

    def key(self) -> rsa.RSAPrivateKey:
        return load_or_create_key(self.key_file)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(self.key())]}

    def mint(self, claims: dict[str, Any], audience: str, ttl: int = 300) -> str:
        """An RS256 ID token for `audience`, valid `ttl` seconds from now."""
        return sign_id_token(self.key(), claims, issuer=self.url, audience=audience, ttl=ttl)

    def daemon_argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "local.issuer",
            "--state-dir",
            str(self.state_dir),
            "--port",
            str(self.port),
        ]


def _handler(issuer: LocalIssuer) -> type[BaseHTTPRequestHandler]:
    jwks = json.dumps(issuer.jwks()).encode()
    discovery = json.dumps(
        {
            "issuer": issuer.url,
            "jwks_uri": issuer.jwks_url,
            "id_token_signing_alg_values_supported": ["RS256"],
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            routes = {
                JWKS_PATH: jwks,
                "/.well-known/openid-configuration": discovery,
                "/healthz": b'{"status": "ok"}',
            }
            body = routes.get(self.path.split("?", 1)[0])
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "max-age=86400, public, must-revalidate")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            print(f"{self.address_string()} {format % args}", flush=True)

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    issuer = LocalIssuer(args.state_dir, args.port)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(issuer))
    print(f"JWKS of the local ID-token issuer at {issuer.jwks_url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
