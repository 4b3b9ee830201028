"""`/api/v1/datasets`: register a manifest of stored files, list by metadata, read one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse

from bridge.api.deps import BridgeDep, CallerDep
from bridge.api.errors import ApiError
from bridge.datasets import service
from bridge.datasets.manifest import InvalidManifest, entry_of
from bridge.datasets.query import InvalidCondition, parse_all
from bridge.datasets.store import ContentStore, StoreError

PATH = "/api/v1/datasets"
router = APIRouter(tags=["datasets"])


def content_store(request: Request, bridge: BridgeDep) -> ContentStore:
    """One S3 client per app, made on first use from the standard AWS_* variables."""
    store = getattr(request.app.state, "content_store", None)
    if store is None:
        store = ContentStore.from_env(bridge.settings.datasets_bucket)
        request.app.state.content_store = store
    return store


def _aware(name: str, moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise ApiError(422, "invalid_request", f"{name}: needs a timezone, e.g. ...Z")
    return moment


def filters_of(
    where: list[str], group: str | None, created_by: str | None, since: Any, until: Any
) -> service.Filters:
    try:
        conditions = tuple(parse_all(where))
    except InvalidCondition as exc:
        raise ApiError(422, "invalid_condition", str(exc)) from None
    return service.Filters(
        conditions=conditions,
        group=group,
        created_by=created_by,
        since=_aware("since", since),
        until=_aware("until", until),
    )


@router.get(PATH, summary="Datasets the caller may read, filtered, newest first")
def list_datasets(
    bridge: BridgeDep,
    caller: CallerDep,
    where: Annotated[
        list[str],
        Query(description="K=V, K!=V, K>V, K>=V, K<V, K<=V, K~TEXT or K? (repeat to AND)"),
    ] = [],  # noqa: B006 - FastAPI copies query defaults
    group: Annotated[str | None, Query(max_length=2000)] = None,
    created_by: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[datetime | None, Query(description="created at or after")] = None,
    until: Annotated[datetime | None, Query(description="created before")] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    after: Annotated[
        str | None, Query(max_length=200, description="`next` of the last page")
    ] = None,
) -> dict[str, Any]:
    filters = filters_of(where, group, created_by, since, until)
    with bridge.db.connection() as conn:
        try:
            page = service.list_datasets(conn, caller, filters, limit=limit, after=after)
        except service.InvalidDataset as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
    return {"datasets": page, "next": service.cursor_of(page[-1]) if len(page) == limit else None}


@router.get(PATH + "/{dataset_id}", summary="One dataset: files, metadata, analyses")
def get_dataset(bridge: BridgeDep, caller: CallerDep, dataset_id: str) -> dict[str, Any]:
    with bridge.db.connection() as conn:
        try:
            return service.get(conn, caller, dataset_id)
        except service.UnknownDataset as exc:
            raise ApiError(404, "unknown_dataset", str(exc)) from None


@router.post(PATH, summary="Register a manifest whose files are already stored")
def register_dataset(
    request: Request,
    bridge: BridgeDep,
    caller: CallerDep,
    document: Annotated[
        Any, Body(description='{"group", "metadata", "files": [{path, size, sha256}]}')
    ],
) -> JSONResponse:
    if not isinstance(document, dict) or not isinstance(document.get("files"), list):
        raise ApiError(422, "invalid_request", 'send {"group", "metadata", "files": [...]}')
    try:
        files = [entry_of(raw) for raw in document["files"]]
        group = service.check_group(document.get("group"))  # type: ignore[arg-type]
        metadata = service.check_metadata(document.get("metadata", {}))
        identity, manifest = service.manifest_of(files)
    except (InvalidManifest, service.InvalidDataset) as exc:
        raise ApiError(422, "invalid_dataset", str(exc)) from None
    caller.require_client(service.client_of_group(bridge.rates, group))
    store = content_store(request, bridge)
    try:
        missing = [
            f for f in {f.sha256: f for f in files}.values() if store.size_of(f.sha256) != f.size
        ]
        if missing:
            raise ApiError(
                422,
                "files_not_stored",
                f"{len(missing)} file(s) are not in {store.uri('')[:-1]} with their size, e.g. "
                f"{missing[0].path} (sha256 {missing[0].sha256}): upload them first",
            )
        if store.size_of(identity) != len(manifest):
            store.put_bytes(identity, manifest)
    except StoreError as exc:
        raise ApiError(503, "store_unavailable", str(exc)) from None
    created_by = "admin" if caller.is_admin else f"client:{caller.client}"
    with bridge.db.connection() as conn:
        try:
            registered = service.register(
                conn, bridge.rates, caller, files, group, metadata, created_by
            )
        except service.DatasetConflict as exc:
            raise ApiError(409, "dataset_conflict", str(exc)) from None
    body = {**registered.dataset, "created": registered.created}
    return JSONResponse(body, status_code=201 if registered.created else 200)
