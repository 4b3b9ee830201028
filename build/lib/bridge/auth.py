"""Who is calling: the operator (admin token), one billing client (client token), or the
usage collector of one runner host (collector token).

Client tokens are random and shown once; only their SHA-256 is stored, so a database dump
does not leak working tokens. A fast hash is right here: the tokens have 256 bits of
entropy, so there is nothing to brute-force. Collector tokens are stored the same way;
they may also be generated elsewhere (the Ansible secrets) and registered as given, which
is why they must be long enough to be unguessable.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

import psycopg

from bridge.billing import canonical_client
from bridge.storage import queries

CLIENT_TOKEN_PREFIX = "bct_"  # noqa: S105 - a prefix that makes leaked tokens recognisable
COLLECTOR_TOKEN_PREFIX = "bhc_"  # noqa: S105 - same, for generated collector tokens
SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
MIN_GIVEN_TOKEN_LENGTH = 24


class Forbidden(PermissionError):
    pass


class SlugTaken(RuntimeError):
    pass


class InvalidSlug(ValueError):
    pass


class InvalidToken(ValueError):
    pass


class HostTaken(RuntimeError):
    pass


class Registration(StrEnum):
    ADDED = "added"
    UNCHANGED = "unchanged"
    REPLACED = "token replaced"


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


def client_of_token(conn: psycopg.Connection, token: str) -> str | None:
    """The client a client token belongs to, or None for an unknown token."""
    if not token.startswith(CLIENT_TOKEN_PREFIX):
        return None
    row = conn.execute(queries.CLIENT_BY_DIGEST, {"token_hash": token_digest(token)}).fetchone()
    return row[0] if row else None


def add_client(conn: psycopg.Connection, slug: str) -> str:
    """Register a billing client under its canonical id (lower-case, see
    `canonical_client`); returns its token, which is not stored and never shown again."""
    given, slug = slug, canonical_client(slug)
    if not SLUG.match(slug):
        raise InvalidSlug(
            f"client {given!r} must be a GitLab group path: letters, digits, '.', '_' or '-'"
        )
    token = CLIENT_TOKEN_PREFIX + secrets.token_urlsafe(32)
    inserted = conn.execute(
        queries.INSERT_CLIENT, {"slug": slug, "token_hash": token_digest(token)}
    ).fetchone()
    if inserted is None:
        raise SlugTaken(f"client {slug!r} already exists (its token was shown when it was added)")
    return token


def _check_host(host: str) -> None:
    if not HOSTNAME.match(host):
        raise InvalidSlug(
            f"collector host {host!r} must be a host name (letters, digits, '.', '_', '-')"
        )


def add_collector(conn: psycopg.Connection, host: str) -> str:
    """Register HOST's collector with a new token; returns it (stored only hashed)."""
    _check_host(host)
    token = COLLECTOR_TOKEN_PREFIX + secrets.token_urlsafe(32)
    inserted = conn.execute(
        queries.INSERT_COLLECTOR, {"host": host, "token_hash": token_digest(token)}
    ).fetchone()
    if inserted is None:
        raise HostTaken(
            f"collector {host!r} already exists; give its token with --token-stdin to replace it"
        )
    return token


def register_collector(conn: psycopg.Connection, host: str, token: str) -> Registration:
    """Register HOST's collector with a given token; the same token again changes nothing,
    another token replaces the old one (rotation). Run inside a transaction."""
    _check_host(host)
    if len(token) < MIN_GIVEN_TOKEN_LENGTH or not token.isprintable() or " " in token:
        raise InvalidToken(
            f"a collector token must be at least {MIN_GIVEN_TOKEN_LENGTH} printable characters "
            "without spaces"
        )
    params = {"host": host, "token_hash": token_digest(token)}
    owner = collector_host(conn, token)
    if owner == host:
        return Registration.UNCHANGED
    if owner is not None:
        raise HostTaken(f"this token is already registered for collector {owner!r}")
    if conn.execute(queries.INSERT_COLLECTOR, params).fetchone() is not None:
        return Registration.ADDED
    conn.execute(queries.UPDATE_COLLECTOR_HASH, params)
    return Registration.REPLACED


def collector_host(conn: psycopg.Connection, token: str) -> str | None:
    """The runner host a collector token belongs to, or None."""
    row = conn.execute(queries.COLLECTOR_BY_DIGEST, {"token_hash": token_digest(token)}).fetchone()
    return row[0] if row else None
