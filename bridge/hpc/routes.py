"""`POST /api/v1/hpc-usage`: a CI job reports what Slurm accounted for its cluster job.

Same order of work as `POST /api/v1/runs`: the CI ID token first (401/503), then the body,
read up to a bound and validated strictly (400, 413, 422), then the body against the token
(422), then one statement.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from bridge.api.deps import BridgeDep
from bridge.api.errors import ApiError, parse_body
from bridge.api.runs import job_identity, refuse_contradictions
from bridge.hpc.usage import HpcUsageReport, Outcome, record
from bridge.provenance import JobIdentity

PATH = "/api/v1/hpc-usage"
router = APIRouter(tags=["hpc"])

# A report is a few hundred bytes; the app's BodyLimit enforces this before the body is read.
MAX_BODY_BYTES = 16 * 1024


async def usage_report(request: Request) -> HpcUsageReport:
    return parse_body(HpcUsageReport, await request.body())


@router.post(
    PATH,
    status_code=201,
    summary="Record Slurm's accounted usage of the cluster job of the CI job named by the token",
    description="`Authorization: Bearer <CI ID token>` (audience = this bridge). Billed as "
    "`hpc` invoice lines: elapsed x allocated CPUs (GPUs), priced per CPU-hour (GPU-hour).",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": HpcUsageReport.model_json_schema()}},
        }
    },
    responses={
        200: {"description": '{"result": "duplicate", "job_id": N}: the same report again'},
        201: {"description": '{"result": "recorded", "job_id": N}'},
        400: {"description": "body is not JSON"},
        401: {"description": "no token, or expired, wrong audience, wrong issuer, bad signature"},
        409: {"description": "the CI job already reported different usage; the first stands"},
        413: {"description": "body larger than 16 KiB"},
        422: {"description": "invalid body, or a body that contradicts the token"},
        503: {"description": "GitLab's signing keys or the database are unreachable"},
    },
)
def record_hpc_usage(
    bridge: BridgeDep,
    identity: Annotated[JobIdentity, Depends(job_identity)],
    report: Annotated[HpcUsageReport, Depends(usage_report)],
) -> JSONResponse:
    refuse_contradictions(report, identity)
    client = bridge.rates.client_of(identity.project_path)
    with bridge.db.connection() as conn:
        outcome = record(conn, bridge.settings.instance, identity, client, report)
    if outcome is Outcome.CONFLICT:
        raise ApiError(
            409,
            "hpc_usage_conflict",
            f"job {identity.job_id} already reported different cluster usage; the first "
            "report stands",
        )
    status = 201 if outcome is Outcome.RECORDED else 200
    return JSONResponse({"result": outcome.value, "job_id": identity.job_id}, status_code=status)
