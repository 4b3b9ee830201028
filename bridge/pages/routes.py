"""`/ui/...`: runs, datasets, analyses and usage pages for the admin and each client."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from bridge import invoices, jobs, reports
from bridge.analyses import service as analyses
from bridge.analyses.routes import submit_analysis
from bridge.api.deps import Bridge, BridgeDep
from bridge.api.errors import ApiError
from bridge.auth import Caller
from bridge.billing import next_period, validate_period
from bridge.datasets import service as datasets
from bridge.datasets.query import InvalidCondition, parse_all
from bridge.pages import chart, queries, session

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
PAGE = 100
MONTHS_CHARTED = 6


class LoginRequired(Exception):
    """No valid session: the page handler answers with a redirect to the login form."""


def _caller(request: Request, bridge: Bridge) -> Caller:
    caller = session.caller_of(bridge, request.cookies.get(session.COOKIE))
    if caller is None:
        raise LoginRequired
    return caller


def _render(request: Request, name: str, caller: Caller | None, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"caller": caller, **context})


def install(app: Any) -> None:
    @app.exception_handler(LoginRequired)
    async def _login(_request: Request, _exc: LoginRequired) -> Response:
        return RedirectResponse("/ui/login", status_code=303)


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return _render(request, "login.html", None, error=None)


@router.post("/login")
def login(
    request: Request, bridge: BridgeDep, token: Annotated[str, Form(max_length=500)]
) -> Response:
    cookie = session.login(bridge, token.strip())
    if cookie is None:
        response = _render(request, "login.html", None, error="unknown token")
        response.status_code = 401
        return response
    response = RedirectResponse("/ui/datasets", status_code=303)
    response.set_cookie(
        session.COOKIE, cookie, max_age=session.MAX_AGE, secure=True, httponly=True,
        samesite="strict", path="/ui",
    )  # fmt: skip
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(session.COOKIE, path="/ui")
    return response


@router.get("/runs")
def runs(request: Request, bridge: BridgeDep) -> HTMLResponse:
    caller = _caller(request, bridge)
    with bridge.db.connection() as conn:
        page = jobs.list_jobs(
            conn, bridge.settings.instance, client=caller.client, project=None, status=None,
            since=None, before=None, limit=50,
        )  # fmt: skip
        chains = [jobs.get_job(conn, bridge.settings.instance, job["id"]) for job in page]
    return _render(request, "runs.html", caller, jobs=[c for c in chains if c])


@router.get("/datasets")
def dataset_list(
    request: Request,
    bridge: BridgeDep,
    where: Annotated[str, Query(max_length=5000)] = "",
    after: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    caller = _caller(request, bridge)
    conditions = [line.strip() for line in where.splitlines() if line.strip()]
    error, found = None, []
    try:
        filters = datasets.Filters(conditions=tuple(parse_all(conditions)))
        with bridge.db.connection() as conn:
            found = datasets.list_datasets(conn, caller, filters, limit=PAGE, after=after)
    except (InvalidCondition, datasets.InvalidDataset) as exc:
        error = str(exc)
    keys = sorted({key for d in found for key in d["metadata"]})
    next_cursor = datasets.cursor_of(found[-1]) if len(found) == PAGE else None
    return _render(
        request, "datasets.html", caller, datasets=found, keys=keys, where=where, error=error,
        next_cursor=next_cursor,
    )  # fmt: skip


@router.get("/datasets/{dataset_id}")
def dataset_page(request: Request, bridge: BridgeDep, dataset_id: str) -> HTMLResponse:
    caller = _caller(request, bridge)
    with bridge.db.connection() as conn:
        try:
            dataset = datasets.get(conn, caller, dataset_id)
        except datasets.UnknownDataset as exc:
            raise ApiError(404, "unknown_dataset", str(exc)) from None
        found = analyses.list_analyses(conn, bridge.rates, caller, dataset_id=dataset_id)
    metadata = json.dumps(dataset["metadata"], indent=2, ensure_ascii=False)
    return _render(
        request, "dataset.html", caller, dataset=dataset, analyses=found, metadata=metadata
    )


@router.get("/analyses")
def analysis_list(request: Request, bridge: BridgeDep) -> HTMLResponse:
    caller = _caller(request, bridge)
    with bridge.db.connection() as conn:
        found = analyses.list_analyses(conn, bridge.rates, caller, limit=100)
    return _render(request, "analyses.html", caller, analyses=found, error=None)


def _variables(text: str) -> dict[str, str]:
    variables = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if line.strip() and not sep:
            raise ApiError(422, "invalid_analysis", f"variable {line.strip()!r}: KEY=VALUE")
        if sep:
            variables[key.strip()] = value
    return variables


@router.post("/analyses")
def analysis_submit(
    request: Request,
    bridge: BridgeDep,
    dataset: Annotated[str, Form(max_length=64)],
    analysis: Annotated[str, Form(max_length=600)],
    variables: Annotated[str, Form(max_length=20000)] = "",
) -> Response:
    caller = _caller(request, bridge)
    try:
        body = {"dataset": dataset.strip(), "analysis": analysis.strip(),
                "variables": _variables(variables)}  # fmt: skip
        found, _created = submit_analysis(request, bridge, caller, body)
    except ApiError as exc:
        with bridge.db.connection() as conn:
            listed = analyses.list_analyses(conn, bridge.rates, caller, limit=100)
        response = _render(request, "analyses.html", caller, analyses=listed, error=exc.message)
        response.status_code = exc.status
        return response
    return RedirectResponse(f"/ui/analyses/{found['id']}", status_code=303)


@router.get("/analyses/{analysis_id}")
def analysis_page(request: Request, bridge: BridgeDep, analysis_id: int) -> HTMLResponse:
    caller = _caller(request, bridge)
    with bridge.db.connection() as conn:
        try:
            found = analyses.get(conn, bridge.rates, caller, analysis_id)
        except analyses.UnknownAnalysis as exc:
            raise ApiError(404, "unknown_analysis", str(exc)) from None
    done = found["status"] in ("succeeded", "failed", "canceled")
    return _render(request, "analysis.html", caller, analysis=found, done=done)


def _previous(period: str, count: int) -> list[str]:
    year, month = (int(p) for p in period.split("-"))
    first = (year * 12 + month - 1) - (count - 1)
    months = [f"{first // 12:04d}-{first % 12 + 1:02d}"]
    while len(months) < count:
        months.append(next_period(months[-1]))
    return months


def _usage(request: Request, bridge: Bridge, client: str | None, period: str | None) -> dict:
    caller = _caller(request, bridge)
    period = period or datetime.now(UTC).strftime("%Y-%m")
    try:
        validate_period(period)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    with bridge.db.connection() as conn:
        clients = [row[0] for row in conn.execute(queries.CLIENTS)]
        if not caller.is_admin:
            client = caller.client
        elif client is None:
            client = clients[0] if clients else None
        if client is None:
            return {"caller": caller, "client": None, "clients": [], "period": period}
        caller.require_client(client)
        try:
            months = [
                (month, invoices.document(conn, bridge.rates, client, month))
                for month in _previous(period, MONTHS_CHARTED)
            ]
        except invoices.UnknownClient:
            raise ApiError(404, "unknown_client", f"no client {client!r}") from None
    totals = [(month, Decimal(doc["total"])) for month, doc in months]
    currency = months[-1][1]["currency"]
    svg = chart.bars(f"Amount per month ({currency})", totals, currency)
    return {
        "caller": caller,
        "client": client,
        "clients": clients,
        "period": period,
        "document": months[-1][1],
        # chart.bars escapes every label it writes.
        "chart": Markup(svg),  # noqa: S704
    }


@router.get("/usage")
def usage_page(
    request: Request,
    bridge: BridgeDep,
    client: Annotated[str | None, Query(max_length=63)] = None,
    period: Annotated[str | None, Query(max_length=7)] = None,
) -> HTMLResponse:
    context = _usage(request, bridge, client, period)
    return _render(request, "usage.html", context.pop("caller"), **context)


@router.get("/usage.{extension}")
def usage_download(
    request: Request,
    bridge: BridgeDep,
    extension: str,
    client: Annotated[str | None, Query(max_length=63)] = None,
    period: Annotated[str | None, Query(max_length=7)] = None,
) -> Response:
    if extension not in ("csv", "json"):
        raise ApiError(404, "not_found", "usage.csv or usage.json")
    context = _usage(request, bridge, client, period)
    if context["client"] is None:
        raise ApiError(404, "unknown_client", "no client yet")
    document = context["document"]
    name = f"usage-{context['client']}-{context['period']}.{extension}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if extension == "csv":
        return Response(reports.to_csv(document), media_type="text/csv; charset=utf-8",
                        headers=headers)  # fmt: skip
    return Response(json.dumps(document, indent=2), media_type="application/json",
                    headers=headers)  # fmt: skip
