"""`POST /hooks/gitlab`: GitLab's Job, Pipeline and System Hook deliveries.

GitLab does not retry (gitlab-contracts.md 1.5) and waits at most 10 s, so the order of
work is: authenticate cheaply, read the body (bounded by `BodyLimit` before a byte is
read), validate, then hand the delivery to the group-commit queue and answer once it is
durable, or 503 after `ingest_timeout` seconds. Bad input is always a 4xx, never a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from time import perf_counter

import psycopg
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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

# Delivery headers worth keeping with the raw event. Never the token or the signature.
_KEPT_HEADERS = frozenset(
    {
        b"x-gitlab-event",
        b"x-gitlab-instance",
        b"x-gitlab-event-uuid",
        b"x-gitlab-webhook-uuid",
        b"idempotency-key",
        b"webhook-id",
        b"webhook-timestamp",
        b"user-agent",
    }
)
_MAX_KEY_LENGTH = 200
_ANSWERS = {
    outcome: json.dumps({"result": outcome.value}).encode()
    for outcome in (Outcome.RECORDED, Outcome.DUPLICATE, Outcome.IGNORED)
}


# The OpenAPI operation of the route (see `route` below for why it is written out).
OPERATION = {
    "tags": ["webhooks"],
    "summary": "Receive a GitLab Job Hook, Pipeline Hook or System Hook delivery",
    "description": "Authenticated by `X-Gitlab-Token` (and `webhook-signature` when a signing "
    "key is set). Deduplicated on `Idempotency-Key`.",
    "operationId": "gitlab_hook",
    "parameters": [
        {"name": name, "in": "header", "required": required, "schema": {"type": "string"}}
        for name, required in (("X-Gitlab-Token", True), ("Idempotency-Key", False))
    ],
    "requestBody": {"required": True, "content": {JSON: {"schema": {"type": "object"}}}},
    "responses": {
        "200": {
            "description": '{"result": "recorded" | "duplicate" | "ignored"}',
            "content": {JSON: {"schema": {"type": "object"}}},
        },
        "400": {"description": "body is not JSON"},
        "401": {"description": "wrong or missing X-Gitlab-Token, or bad webhook-signature"},
        "413": {"description": "body larger than BRIDGE_MAX_WEBHOOK_BYTES"},
        "422": {"description": "JSON, but not a usable GitLab event; the message names the field"},
        "503": {"description": "the ledger could not record it in time; nothing may be recorded"},
    },
}


async def gitlab_hook(request: Request) -> Response:
    bridge: Bridge = request.app.state.bridge
    started = perf_counter()
    label = "rejected"
    try:
        outcome = await _ingest(bridge, request)
        label = outcome.value
        shown = Outcome.RECORDED if outcome is Outcome.CONFLICT else outcome
        return Response(_ANSWERS[shown], media_type=JSON)
    except DatabaseUnavailable:
        label = "unavailable"
        raise
    except ApiError as exc:
        label = "unavailable" if exc.status == 503 else "rejected"
        raise
    finally:
        bridge.metrics.events.labels(label).inc()
        bridge.metrics.ingest_seconds.observe(perf_counter() - started)


# A plain route of the app (same middleware, error boundary, body limit and exception
# handlers as every other route) without FastAPI's per-request dependency solving, which
# takes nothing from a handler that reads the raw request and costs the busiest route about
# a fifth of its throughput (`make bench`). `app.py` adds OPERATION to the OpenAPI document.
route = Route(PATH, gitlab_hook, methods=["POST"])


async def _ingest(bridge: Bridge, request: Request) -> Outcome:
    settings = bridge.settings
    headers = request.headers
    if not same_secret(headers.get("x-gitlab-token"), settings.webhook_token):
        raise ApiError(401, "unauthorized", "missing or wrong X-Gitlab-Token")
    body = await request.body()
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
        headers=_kept_headers(request),
        idempotency_key=_idempotency_key(headers),
    )
    # Durable before we answer: the future resolves after the commit that contains it.
    answer = asyncio.wrap_future(bridge.ingest.submit(delivery, parsed.facts))
    try:
        # Shielded: giving up waiting must not withdraw the delivery from its batch.
        async with asyncio.timeout(settings.ingest_timeout):
            return await asyncio.shield(answer)
    except TimeoutError:
        log.error("delivery not committed within %g s", settings.ingest_timeout)
        raise ApiError(
            503,
            "ingest_timeout",
            f"not confirmed within {settings.ingest_timeout:g} s; it may still be recorded",
        ) from None
    except psycopg.Error as exc:
        log.error("delivery refused by the database: %s", exc)
        raise ApiError(503, "ledger_refused", "the ledger could not record this delivery") from None


def _kept_headers(request: Request) -> dict[str, str]:
    # One pass over the raw headers (the first of repeated ones), not a lookup per name.
    kept: dict[str, str] = {}
    for name, value in request.scope["headers"]:
        if name in _KEPT_HEADERS:
            kept.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return kept


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
