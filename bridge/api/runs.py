"""`POST /api/v1/runs`: a CI job records its run's provenance, proven by its CI ID token.

Order of work: the token first (401, or 503 when GitLab's keys cannot be fetched), then the
body, read up to a bound and validated strictly (400, 413, 422), then the body against the
token (422), then one short transaction. The body is read by hand rather than declared as a
FastAPI body parameter, which would parse any body, unbounded, before the token is looked at.
"""

from __future__ import annotations

import threading
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from bridge import provenance
from bridge.api.deps import Bridge, BridgeDep, bearer_token, inline_schema
from bridge.api.errors import ApiError, parse_body
from bridge.provenance import IdTokenVerifier, JobIdentity, Outcome, RunReport
from bridge.settings import ConfigError

PATH = "/api/v1/runs"
router = APIRouter(tags=["provenance"])
_VERIFIER_LOCK = threading.Lock()


def _verifier(request: Request, bridge: Bridge) -> IdTokenVerifier:
    """One verifier per application, made on first use: its key cache lives as long as the app."""
    with _VERIFIER_LOCK:
        verifier = getattr(request.app.state, "id_token_verifier", None)
        if verifier is None:
            try:
                verifier = IdTokenVerifier.from_settings(bridge.settings)
            except ConfigError as exc:
                raise ApiError(503, "not_configured", f"run provenance is off: {exc}") from None
            request.app.state.id_token_verifier = verifier
    return verifier


def job_identity(request: Request, bridge: BridgeDep) -> JobIdentity:
    token = bearer_token(request)
    try:
        return _verifier(request, bridge).verify(token)
    except provenance.TokenRejected as exc:
        raise ApiError(401, "invalid_id_token", f"CI ID token rejected: {exc}") from None
    except provenance.SigningKeysUnavailable as exc:
        raise ApiError(
            503, "signing_keys_unavailable", f"cannot check the token now: {exc}"
        ) from None


class TokenBoundReport(Protocol):
    def contradictions(self, identity: JobIdentity) -> list[str]: ...


def refuse_contradictions(report: TokenBoundReport, identity: JobIdentity) -> None:
    """Identity comes from the token: a body that says otherwise is refused (422)."""
    contradictions = report.contradictions(identity)
    if contradictions:
        raise ApiError(
            422,
            "contradicts_token",
            "identity comes from the CI ID token, and the body disagrees: "
            + "; ".join(contradictions),
        )


async def run_report(request: Request) -> RunReport:
    # Bounded by BRIDGE_MAX_RUN_BYTES (BodyLimit) before it is read.
    return parse_body(RunReport, await request.body())


@router.post(
    PATH,
    status_code=201,
    summary="Record the provenance of the CI job named by the bearer ID token",
    description="`Authorization: Bearer <CI ID token>` (GitLab `id_tokens:`, audience = this "
    "bridge). Identity comes from the token; identity fields in the body must agree with it.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(RunReport)}},
        }
    },
    responses={
        200: {"description": '{"result": "duplicate", "job_id": N}: the same report again'},
        201: {"description": '{"result": "recorded", "job_id": N}'},
        400: {"description": "body is not JSON"},
        401: {"description": "no token, or expired, wrong audience, wrong issuer, bad signature"},
        409: {"description": "the job already reported a different run; the first one stands"},
        413: {"description": "body larger than BRIDGE_MAX_RUN_BYTES"},
        422: {"description": "invalid body, or a body that contradicts the token"},
        503: {"description": "GitLab's signing keys or the database are unreachable"},
    },
)
def record_run(
    bridge: BridgeDep,
    identity: Annotated[JobIdentity, Depends(job_identity)],
    report: Annotated[RunReport, Depends(run_report)],
) -> JSONResponse:
    refuse_contradictions(report, identity)
    client = bridge.rates.client_of(identity.project_path)
    with bridge.db.connection() as conn:
        outcome = provenance.record(conn, bridge.settings.instance, identity, client, report)
    if outcome is Outcome.CONFLICT:
        raise ApiError(
            409,
            "run_conflict",
            f"job {identity.job_id} already recorded a different run; the first record stands "
            "and this one is kept beside it for review",
        )
    status = 201 if outcome is Outcome.RECORDED else 200
    return JSONResponse({"result": outcome.value, "job_id": identity.job_id}, status_code=status)
