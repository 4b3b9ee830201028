"""`POST /api/v1/usage-samples`: measured usage from the runner hosts' collectors.

Authenticated by the host's collector token; the host is taken from the token, never from
the body. The token is checked before the body is read (the body is bounded by
`BRIDGE_MAX_SAMPLES_BYTES` in any case). Samples are cumulative per container and stored
max-wins (see `bridge.usage`), so a collector may resend anything, any number of times.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bridge.api.deps import BridgeDep, bearer_token, inline_schema
from bridge.api.errors import ApiError, parse_body
from bridge.auth import collector_host
from bridge.usage import MAX_SAMPLES, Sample, record_samples

PATH = "/api/v1/usage-samples"
router = APIRouter(tags=["usage"])


class SampleBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples: list[Sample] = Field(min_length=1, max_length=MAX_SAMPLES)


def collector(request: Request, bridge: BridgeDep) -> str:
    """The runner host whose collector token this is; 401 for anything else."""
    token = bearer_token(request)
    with bridge.db.connection() as conn:
        host = collector_host(conn, token)
    if host is None:
        raise ApiError(401, "unauthorized", "unknown collector token")
    return host


async def sample_batch(
    request: Request, bridge: BridgeDep, _host: Annotated[str, Depends(collector)]
) -> SampleBatch:
    """The body, read only once the token is known good."""
    try:
        return parse_body(SampleBatch, await request.body())
    except ApiError:
        bridge.metrics.samples.labels("rejected").inc()
        raise


@router.post(
    PATH,
    summary="Cumulative usage of job containers on one runner host",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(SampleBatch)}},
        }
    },
    responses={
        400: {"description": "body is not JSON"},
        401: {"description": "no or unknown collector token"},
        413: {"description": "body larger than BRIDGE_MAX_SAMPLES_BYTES"},
        422: {"description": "invalid samples; the message names the field"},
        503: {"description": "the ledger database is unreachable"},
    },
)
def usage_samples(
    bridge: BridgeDep,
    host: Annotated[str, Depends(collector)],
    batch: Annotated[SampleBatch, Depends(sample_batch)],
) -> dict[str, int]:
    with bridge.db.connection() as conn:
        changed = record_samples(conn, bridge.settings.instance, host, batch.samples)
    bridge.metrics.samples.labels("accepted").inc(len(batch.samples))
    bridge.metrics.samples_changed.inc(changed)
    return {"accepted": len(batch.samples), "changed": changed}
