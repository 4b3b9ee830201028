"""`POST /hooks/gitlab`: GitLab's Job, Pipeline and System Hook deliveries.

GitLab does not retry (gitlab-contracts.md 1.5) and waits at most 10 s, so the order of
work is: authenticate cheaply, bound the body, validate, then hand the delivery to the
group-commit queue and answer once it is durable. Bad input is always a 4xx, never a 5xx.

This is the busiest route by far, so it is a plain ASGI endpoint in front of the FastAPI
app: the framework's per-request machinery (middleware, routing, dependency injection,
response rendering) costs more CPU than validating and storing the delivery. It is
documented in the OpenAPI schema through `OPENAPI` below.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from time import perf_counter
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from bridge import hooksync
from bridge.api.deps import Bridge
from bridge.api.errors import ApiError
from bridge.auth import same_secret
from bridge.gitlab.webhooks import MalformedEvent, MalformedJson, parse_body
from bridge.ledger import Delivery, Outcome
from bridge.storage.database import DatabaseUnavailable

PATH = "/hooks/gitlab"
JSON = "application/json"
log = logging.getLogger("bridge.hooks")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Delivery headers worth keeping with the raw event. Never the token or the signature.
_KEPT_HEADERS = (
    "x-gitlab-event",
    "x-gitlab-instance",
    "x-gitlab-event-uuid",
    "x-gitlab-webhook-uuid",
    "idempotency-key",
    "webhook-id",
    "webhook-timestamp",
    "user-agent",
)
_MAX_KEY_LENGTH = 200
_ANSWERS = {
    outcome: json.dumps({"result": outcome.value}).encode()
    for outcome in (Outcome.RECORDED, Outcome.DUPLICATE, Outcome.IGNORED)
}

OPENAPI = {
    "post": {
        "tags": ["webhooks"],
        "summary": "Receive a GitLab Job Hook, Pipeline Hook or System Hook delivery",
        "description": "Authenticated by `X-Gitlab-Token` (and `webhook-signature` when a "
        "signing key is set). Deduplicated on `Idempotency-Key`.",
        "requestBody": {"required": True, "content": {JSON: {"schema": {"type": "object"}}}},
        "responses": {
            "200": {"description": '{"result": "recorded" | "duplicate" | "ignored"}'},
            "400": {"description": "body is not JSON"},
            "401": {"description": "wrong or missing X-Gitlab-Token, or bad webhook-signature"},
            "413": {"description": "body larger than the limit"},
            "422": {"description": "JSON, but not a usable GitLab event"},
            "503": {"description": "the ledger database is unreachable; nothing was recorded"},
        },
    }
}


class WebhookEndpoint:
    """ASGI middleware that answers `POST /hooks/gitlab` itself and passes the rest on."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _respond(send, 405, _envelope("method_not_allowed", "use POST"))
            return
        bridge: Bridge = scope["app"].state.bridge
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        started = perf_counter()
        label = "rejected"
        try:
            outcome = await _ingest(bridge, headers, receive)
            label = outcome.value
            status, body = (
                200,
                _ANSWERS[Outcome.RECORDED if outcome is Outcome.CONFLICT else outcome],
            )
        except ApiError as exc:
            status, body = exc.status, _envelope(exc.code, exc.message)
        except DatabaseUnavailable as exc:
            log.warning("webhook not recorded, database unavailable: %s", exc)
            label = "unavailable"
            status = 503
            body = _envelope("database_unavailable", "the ledger database is unreachable")
        finally:
            bridge.metrics.events.labels(label).inc()
            bridge.metrics.ingest_seconds.observe(perf_counter() - started)
        await _respond(send, status, body)


def _envelope(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _ingest(bridge: Bridge, headers: Mapping[str, str], receive: Receive) -> Outcome:
    settings = bridge.settings
    if not same_secret(headers.get("x-gitlab-token"), settings.webhook_token):
        raise ApiError(401, "unauthorized", "missing or wrong X-Gitlab-Token")
    body = await _read_body(headers, receive, settings.max_body_bytes)
    if settings.webhook_signing_key:
        _verify_signature(settings.webhook_signing_key, body, headers)
    try:
        parsed = parse_body(body)
    except MalformedJson as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    except MalformedEvent as exc:
        raise ApiError(422, "invalid_event", str(exc)) from None
    if parsed.project_created is not None:
        # CE has no instance-wide job events: the new project needs its own hook. Made in
        # the background, so neither this delivery nor job events wait for GitLab's API.
        hooksync.provision_later(settings, parsed.project_created)
    if not parsed.facts:
        # Unknown kinds, pipelines without jobs, system events: acknowledged, not recorded
        # (a 4xx would count as a failure and may get the hook disabled).
        return Outcome.IGNORED
    delivery = Delivery(
        instance=settings.instance,
        source="webhook",
        kind=parsed.kind,
        body=body,
        headers={k: v for k in _KEPT_HEADERS if (v := headers.get(k)) is not None},
        idempotency_key=_idempotency_key(headers),
    )
    # Durable before we answer: the future resolves after the commit that contains it.
    return await asyncio.wrap_future(bridge.ingest.submit(delivery, parsed.facts))


async def _read_body(headers: Mapping[str, str], receive: Receive, limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"body of {declared} bytes exceeds {limit} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "incomplete_body", "the client went away mid-body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _verify_signature(key: str, body: bytes, headers: Mapping[str, str]) -> None:
    signed = {
        name: value
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        if (value := headers.get(name)) is not None
    }
    if "webhook-signature" not in signed:
        raise ApiError(401, "unauthorized", "missing webhook-signature (a signing key is set)")
    try:
        Webhook(key).verify(body, signed, json_parse=False)
    except (WebhookVerificationError, ValueError) as exc:
        # ValueError covers malformed base64 and signature entries without "v1,".
        raise ApiError(401, "unauthorized", f"webhook-signature rejected: {exc}") from None


def _idempotency_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get("idempotency-key") or headers.get("webhook-id")
    if key is not None and (not key.strip() or len(key) > _MAX_KEY_LENGTH):
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-200 chars")
    return key
