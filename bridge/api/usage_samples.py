"""`POST /api/v1/usage-samples`: measured usage from the runner hosts' collectors.

Authenticated by the host's collector token; the host is taken from the token, never from
the body. Samples are cumulative per container and stored max-wins (see `bridge.usage`), so
a collector may resend anything, any number of times.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bridge.api.deps import BridgeDep, bearer_token
from bridge.api.errors import ApiError
from bridge.auth import collector_host
from bridge.usage import MAX_SAMPLES, Sample, record_samples

router = APIRouter(prefix="/api/v1", tags=["usage"])


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


@router.post("/usage-samples", summary="Cumulative usage of job containers on one runner host")
def usage_samples(
    batch: SampleBatch, bridge: BridgeDep, host: Annotated[str, Depends(collector)]
) -> dict[str, int]:
    with bridge.db.connection() as conn:
        changed = record_samples(conn, bridge.settings.instance, host, batch.samples)
    return {"accepted": len(batch.samples), "changed": changed}
