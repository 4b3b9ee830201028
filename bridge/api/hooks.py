"""`POST /hooks/gitlab`: GitLab's Job, Pipeline and System Hook deliveries.

GitLab does not retry (gitlab-contracts.md 1.5) and waits at most 10 s, so the order of
work is: authenticate cheaply, bound the body, validate, then one short transaction that
stores the delivery and applies it. Bad input is always a 4xx, never a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
from time import perf_counter

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.api.deps import Bridge
from bridge.api.errors import ApiError
from bridge.auth import same_secret
from bridge.gitlab.webhooks import MalformedEvent, parse_event
from bridge.ledger import Delivery, Outcome
from bridge.storage.database import DatabaseUnavailable

JSON = "application/json"
log = logging.getLogger("bridge.hooks")

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
    outcome: Response(json.dumps({"result": outcome.value}).encode(), media_type=JSON)
    for outcome in (Outcome.RECORDED, Outcome.DUPLICATE, Outcome.IGNORED)
}


async def gitlab_hook(request: Request) -> Response:
    """The busiest route, so a plain Starlette endpoint: FastAPI's per-request dependency
    and serialisation machinery cost more CPU than the whole ingest. Documented in the
    OpenAPI schema through `OPENAPI` below."""
    bridge: Bridge = request.app.state.bridge
    started = perf_counter()
    label = "rejected"
    try:
        outcome = await _ingest(request, bridge)
        label = outcome.value
        return _ANSWERS[Outcome.RECORDED if outcome is Outcome.CONFLICT else outcome]
    except DatabaseUnavailable:
        label = "unavailable"
        raise
    finally:
        bridge.metrics.events.labels(label).inc()
        bridge.metrics.ingest_seconds.observe(perf_counter() - started)


ROUTE = Route("/hooks/gitlab", gitlab_hook, methods=["POST"])

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


async def _ingest(request: Request, bridge: Bridge) -> Outcome:
    settings = bridge.settings
    if not same_secret(request.headers.get("x-gitlab-token"), settings.webhook_token):
        raise ApiError(401, "unauthorized", "missing or wrong X-Gitlab-Token")
    body = await _read_body(request, settings.max_body_bytes)
    if settings.webhook_signing_key:
        _verify_signature(settings.webhook_signing_key, body, request)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    try:
        parsed = parse_event(payload)
    except MalformedEvent as exc:
        raise ApiError(422, "invalid_event", str(exc)) from None
    if not parsed.facts:
        # Unknown kinds, pipelines without jobs, system events: acknowledged, not recorded
        # (a 4xx would count as a failure and may get the hook disabled).
        return Outcome.IGNORED
    delivery = Delivery(
        instance=settings.instance,
        source="webhook",
        kind=parsed.kind,
        body=body,
        headers={k: v for k in _KEPT_HEADERS if (v := request.headers.get(k)) is not None},
        idempotency_key=_idempotency_key(request),
    )
    # Durable before we answer: the future resolves after the commit that contains it.
    return await asyncio.wrap_future(bridge.ingest.submit(delivery, parsed.facts))


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"body of {declared} bytes exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _verify_signature(key: str, body: bytes, request: Request) -> None:
    headers = {
        name: value
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        if (value := request.headers.get(name)) is not None
    }
    if "webhook-signature" not in headers:
        raise ApiError(401, "unauthorized", "missing webhook-signature (a signing key is set)")
    try:
        Webhook(key).verify(body, headers, json_parse=False)
    except (WebhookVerificationError, ValueError) as exc:
        # ValueError covers malformed base64 and signature entries without "v1,".
        raise ApiError(401, "unauthorized", f"webhook-signature rejected: {exc}") from None


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key") or request.headers.get("webhook-id")
    if key is not None and (not key.strip() or len(key) > _MAX_KEY_LENGTH):
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-200 chars")
    return key
