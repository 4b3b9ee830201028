"""Who is calling: the operator (admin token) or one billing client (client token).

Client tokens are random and shown once; only their SHA-256 is stored, so a database dump
does not leak working tokens. A fast hash is right here: the tokens have 256 bits of
entropy, so there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import psycopg

from bridge.storage import queries

CLIENT_TOKEN_PREFIX = "bct_"  # noqa: S105 - a prefix that makes leaked tokens recognisable
SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class Forbidden(PermissionError):
    pass


class SlugTaken(RuntimeError):
    pass


class InvalidSlug(ValueError):
    pass


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the admin, or exactly one client."""

    client: str | None

    @property
    def is_admin(self) -> bool:
        return self.client is None

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this needs the admin token")

    def require_client(self, client: str) -> None:
        if not self.is_admin and self.client != client:
            raise Forbidden(f"a client token only sees its own client ({self.client})")


ADMIN = Caller(client=None)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; an unset expected secret never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def identify(conn: psycopg.Connection, token: str, admin_token: str | None) -> Caller | None:
    """The caller a bearer token belongs to, or None for an unknown token."""
    if same_secret(token, admin_token):
        return ADMIN
    if not token.startswith(CLIENT_TOKEN_PREFIX):
        return None
    row = conn.execute(queries.CLIENT_BY_DIGEST, {"token_hash": token_digest(token)}).fetchone()
    return Caller(client=row[0]) if row else None


def add_client(conn: psycopg.Connection, slug: str) -> str:
    """Register a billing client; returns its token, which is not stored and never shown again."""
    if not SLUG.match(slug):
        raise InvalidSlug(
            f"client slug {slug!r} must be lowercase letters, digits, '.', '_' or '-' "
            "(like a GitLab group path)"
        )
    token = CLIENT_TOKEN_PREFIX + secrets.token_urlsafe(32)
    inserted = conn.execute(
        queries.INSERT_CLIENT, {"slug": slug, "token_hash": token_digest(token)}
    ).fetchone()
    if inserted is None:
        raise SlugTaken(f"client {slug!r} already exists (its token was shown when it was added)")
    return token
