"""`/api/v1/analyses`: submit an analysis on a dataset, follow its status and results."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse

from bridge.analyses import service
from bridge.analyses.trigger import GitLabTrigger, Trigger, TriggerFailed, TriggerRefused
from bridge.api.deps import BridgeDep, CallerDep
from bridge.api.errors import ApiError
from bridge.datasets.service import UnknownDataset
from bridge.settings import ConfigError

router = APIRouter(prefix="/api/v1", tags=["analyses"])


def pipeline_trigger(request: Request, bridge: BridgeDep) -> Trigger:
    """One GitLab client per app, made on first use from BRIDGE_GITLAB_URL and _TOKEN."""
    trigger = getattr(request.app.state, "analysis_trigger", None)
    if trigger is None:
        try:
            bridge.settings.require("gitlab_token")
        except ConfigError as exc:
            raise ApiError(503, "gitlab_not_configured", str(exc)) from None
        trigger = GitLabTrigger(bridge.settings.instance, str(bridge.settings.gitlab_token))
        request.app.state.analysis_trigger = trigger
    return trigger


def submit_analysis(
    request: Request, bridge: BridgeDep, caller: CallerDep, document: Any
) -> tuple[dict[str, Any], bool]:
    """Shared by the API and the pages' form."""
    if not isinstance(document, dict):
        raise ApiError(422, "invalid_request", 'send {"dataset", "analysis", "variables"}')
    dataset, analysis = document.get("dataset"), document.get("analysis")
    force = document.get("force", False)
    if not isinstance(dataset, str) or not isinstance(force, bool):
        raise ApiError(422, "invalid_request", "dataset must be an id, force a boolean")
    created_by = "admin" if caller.is_admin else f"client:{caller.client}"
    try:
        service.parse_analysis(analysis)  # type: ignore[arg-type]
        variables = service.check_variables(document.get("variables", {}))
        trigger = pipeline_trigger(request, bridge)
        with bridge.db.connection() as conn:
            submitted = service.submit(
                conn, bridge.rates, bridge.settings.instance, trigger, caller,
                dataset_id=dataset, analysis=analysis, variables=variables,  # type: ignore[arg-type]
                created_by=created_by, force=force,
            )  # fmt: skip
    except service.InvalidAnalysis as exc:
        raise ApiError(422, "invalid_analysis", str(exc)) from None
    except UnknownDataset as exc:
        raise ApiError(404, "unknown_dataset", str(exc)) from None
    except TriggerRefused as exc:
        raise ApiError(422, "pipeline_refused", str(exc)) from None
    except TriggerFailed as exc:
        raise ApiError(502, "gitlab_unavailable", str(exc)) from None
    return submitted.analysis, submitted.created


@router.post("/analyses", summary="Submit an analysis (the same request again returns it)")
def post_analysis(
    request: Request,
    bridge: BridgeDep,
    caller: CallerDep,
    document: Annotated[Any, Body(description='{"dataset", "analysis", "variables", "force"}')],
) -> JSONResponse:
    analysis, created = submit_analysis(request, bridge, caller, document)
    return JSONResponse({**analysis, "created": created}, status_code=201 if created else 200)


@router.get("/analyses", summary="Analyses the caller may read, newest first")
def list_analyses(
    bridge: BridgeDep,
    caller: CallerDep,
    dataset: Annotated[str | None, Query(max_length=64)] = None,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="cursor: ids below")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    with bridge.db.connection() as conn:
        page = service.list_analyses(
            conn, bridge.rates, caller, dataset_id=dataset, before=before, limit=limit
        )
    return {"analyses": page, "next_before": page[-1]["id"] if len(page) == limit else None}


@router.get("/analyses/{analysis_id}", summary="One analysis: status, jobs, MLflow runs, usage")
def get_analysis(bridge: BridgeDep, caller: CallerDep, analysis_id: int) -> dict[str, Any]:
    if not 0 < analysis_id < 2**62:
        raise ApiError(404, "unknown_analysis", f"no analysis {analysis_id}")
    with bridge.db.connection() as conn:
        try:
            return service.get(conn, bridge.rates, caller, analysis_id)
        except service.UnknownAnalysis as exc:
            raise ApiError(404, "unknown_analysis", str(exc)) from None
