"""Request-scoped dependencies: the app's services and the authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel

from bridge.api.errors import ApiError
from bridge.auth import ADMIN, Caller, client_of_token, same_secret
from bridge.billing import Rates
from bridge.ingest import IngestQueue
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.storage.database import Database


@dataclass
class Bridge:
    """What every request handler needs; one per application."""

    settings: Settings
    rates: Rates
    db: Database
    ingest: IngestQueue
    metrics: Metrics


def services(request: Request) -> Bridge:
    return request.app.state.bridge


def bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    return token.strip()


BridgeDep = Annotated[Bridge, Depends(services)]


def caller(request: Request, bridge: BridgeDep) -> Caller:
    """The admin or a client; 401 for anything else."""
    token = bearer_token(request)
    if same_secret(token, bridge.settings.admin_token):
        return ADMIN
    with bridge.db.connection() as conn:
        client = client_of_token(conn, token)
    if client is None:
        raise ApiError(401, "unauthorized", "unknown token")
    return Caller(client=client)


CallerDep = Annotated[Caller, Depends(caller)]


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` inlined, to sit inside the OpenAPI document
    of a route that reads its body by hand."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)
