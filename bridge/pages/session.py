"""Page sessions until single sign-on: a login form takes an admin or client token and sets
a signed cookie that carries only the token's SHA-256, checked again on every request (a
revoked client token ends its sessions). The signing key is derived from the admin token,
so rotating that token ends every session."""

from __future__ import annotations

import hashlib
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from bridge.auth import ADMIN, Caller, client_of_token, same_secret, token_digest
from bridge.storage import queries

COOKIE = "bridge_session"
MAX_AGE = 8 * 3600


def _serializer(admin_token: str) -> URLSafeTimedSerializer:
    key = hashlib.sha256(b"bridge pages session\0" + admin_token.encode()).hexdigest()
    return URLSafeTimedSerializer(key, salt="bridge.pages")


def login(bridge: Any, token: str) -> str | None:
    """The cookie value for a valid token, else None."""
    admin_token = str(bridge.settings.admin_token)
    if not same_secret(token, admin_token):
        with bridge.db.connection() as conn:
            if client_of_token(conn, token) is None:
                return None
    return _serializer(admin_token).dumps({"t": token_digest(token)})


def caller_of(bridge: Any, cookie: str | None) -> Caller | None:
    if not cookie:
        return None
    admin_token = str(bridge.settings.admin_token)
    try:
        data = _serializer(admin_token).loads(cookie, max_age=MAX_AGE)
    except BadSignature:
        return None
    digest = data.get("t") if isinstance(data, dict) else None
    if not isinstance(digest, str):
        return None
    if same_secret(digest, token_digest(admin_token)):
        return ADMIN
    with bridge.db.connection() as conn:
        row = conn.execute(queries.CLIENT_BY_DIGEST, {"token_hash": digest}).fetchone()
    return Caller(client=row[0]) if row else None
