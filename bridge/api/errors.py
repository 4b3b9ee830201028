"""The error boundary of the HTTP API: one JSON shape for every failure, on every route.

Every error answer is `{"error": {"code": ..., "message": ..., "request_id": ...}}`. Expected
failures (bad input, auth, an unreachable database) are mapped by the handlers below; any
other exception is caught by `ErrorBoundary`, logged with its traceback under the request id,
and answered 500 with the same envelope: no plain-text 500 anywhere. The request id is also
sent as `X-Request-Id` on every answer, so an operator can find the log line a caller quotes.

`BodyLimit` bounds every request body before any route reads it: a declared
`Content-Length` above the route's limit is refused before a byte is read, and a streamed
body is cut as soon as it passes the limit.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from bridge.auth import Forbidden
from bridge.storage.database import DatabaseUnavailable

log = logging.getLogger("bridge.api")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "x-request-id"
# A caller's own request id is kept only if it is short and plain (it ends up in logs).
_GIVEN_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_request_id: ContextVar[str] = ContextVar("request_id", default="-")
# Ids we assign: unique per process start, then a counter. Not uuid4 per request: reading
# the OS's random source releases the GIL, and on the busy webhook path the release waits
# behind the ingest writer threads for the interpreter again (cProfile of `make bench`'s
# ingest load: ~0.2 ms per os.urandom call).
_ID_PREFIX = secrets.token_hex(6)
_id_counter = itertools.count(1)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _new_request_id() -> str:
    return f"{_ID_PREFIX}-{next(_id_counter):x}"


def current_request_id() -> str:
    return _request_id.get()


def envelope(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "request_id": current_request_id()}}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(envelope(code, message), status_code=status)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


def describe_errors(errors: list[Any]) -> str:
    """`field.path: problem` for the first few errors, short enough for an error message."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors[:5]
    )


Report = TypeVar("Report", bound=BaseModel)


def parse_body(model: type[Report], body: bytes) -> Report:
    """The body as `model`: 400 when it is not JSON, 422 naming the fields otherwise."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        if errors[0]["type"] == "json_invalid":
            raise ApiError(400, "malformed_json", errors[0]["msg"]) from None
        raise ApiError(422, "invalid_request", describe_errors(errors)) from None


def install(app: FastAPI) -> None:
    """The handlers of expected failures; `ErrorBoundary` catches everything else."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(Forbidden)
    async def _forbidden(_request: Request, exc: Forbidden) -> JSONResponse:
        return error_response(403, "forbidden", str(exc))

    @app.exception_handler(DatabaseUnavailable)
    async def _database(_request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        # The cause goes to the log, not to the caller; retrying later is the whole advice.
        log.warning("[%s] database unavailable: %s", current_request_id(), exc)
        return error_response(503, "database_unavailable", "the ledger database is unreachable")

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", describe_errors(list(exc.errors())))

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))


class ErrorBoundary:
    """Outermost middleware: a request id for every request, and a JSON 500 (logged with
    its traceback) for any exception nothing else handled."""

    def __init__(self, app: Asgi) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER)
        request_id = given if given and _GIVEN_ID.match(given) else _new_request_id()
        token = _request_id.set(request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception(
                "[%s] unexpected error on %s %s", request_id, scope["method"], scope["path"]
            )
            if started:
                raise  # the answer is half sent; the server closes the connection
            await send_json(
                send_with_id,
                500,
                envelope("internal_error", f"unexpected error; quote request id {request_id}"),
            )
        finally:
            _request_id.reset(token)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body exceeds {limit} bytes")


class BodyLimit:
    """Bounds the body of every request: `limits` per path, `default` for any other path."""

    def __init__(self, app: Asgi, limits: Mapping[str, int], default: int) -> None:
        self.app = app
        self.limits = dict(limits)
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.default)
        declared = _header(scope, "content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_json(send, 400, envelope("bad_request", "invalid Content-Length"))
                return
            if int(declared) > limit:
                await send_json(
                    send,
                    413,
                    envelope("body_too_large", f"body of {declared} bytes exceeds {limit} bytes"),
                )
                return
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, bounded, send)


async def send_json(send: Send, status: int, document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.encode()
    for key, value in scope["headers"]:
        if key == wanted:
            return value.decode("latin-1")
    return None
