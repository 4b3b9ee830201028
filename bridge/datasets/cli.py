"""`bridge datasets add|list|show`: the registry from the command line (operator side: talks
to the ledger database and the S3 store directly)."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from bridge.auth import ADMIN, Forbidden
from bridge.billing import RatesFileError, load_rates
from bridge.datasets import formats, service
from bridge.datasets.manifest import InvalidManifest
from bridge.datasets.query import InvalidCondition, parse_all
from bridge.datasets.store import ContentStore, StoreError
from bridge.datasets.upload import upload
from bridge.settings import ConfigError, Settings
from bridge.storage.database import DatabaseUnavailable, single_connection

EXPECTED_ERRORS = (
    ConfigError,
    RatesFileError,
    DatabaseUnavailable,
    InvalidManifest,
    InvalidCondition,
    service.InvalidDataset,
    service.DatasetConflict,
    service.UnknownDataset,
    StoreError,
    Forbidden,
)


class ExpectedErrors(click.Group):
    """Failures a user can fix: one line and exit 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EXPECTED_ERRORS as exc:
            raise click.ClickException(str(exc)) from None


def _meta(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE")
        try:
            # Numbers, booleans and JSON structures keep their type; anything else is text.
            metadata[key] = json.loads(value)
        except ValueError:
            metadata[key] = value
    return metadata


def _settings() -> Settings:
    settings = Settings.from_env()
    settings.require("database_url", "rates_file")
    return settings


def _print(datasets: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        click.echo(json.dumps([formats.public(d) for d in datasets], indent=2))
    elif output == "csv":
        click.echo(formats.to_csv(datasets), nl=False)
    else:
        click.echo(formats.to_table(datasets))


FORMAT = click.option(
    "--format", "output", type=click.Choice(["table", "json", "csv"]), default="table",
    show_default=True,
)  # fmt: skip


@click.group(cls=ExpectedErrors)
def datasets() -> None:
    """Datasets by content: register files, find them by metadata."""


@datasets.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--group", required=True, help="Owning GitLab group (its members can read it).")
@click.option("--meta", "meta", multiple=True, callback=_meta, help="KEY=VALUE (repeatable).")
@click.option(
    "--meta-file", type=click.File("r"), help="JSON object of metadata (--meta adds to it)."
)
@click.option("--created-by", default=getpass.getuser, show_default="your user name")
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option(
    "--bucket", envvar="BRIDGE_DATASETS_BUCKET", default="datasets", show_envvar=True,
    help="S3 bucket of the dataset store.",
)  # fmt: skip
def add(
    paths: tuple[Path, ...],
    group: str,
    meta: dict[str, Any],
    meta_file: Any,
    created_by: str,
    output: str,
    bucket: str,
) -> None:
    """Upload PATHS (files, or folders: their files by relative path) and register them.

    Files already in the store are not sent again; the same files always give the same id.
    S3 comes from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    """
    metadata: dict[str, Any] = {}
    if meta_file is not None:
        try:
            metadata = json.load(meta_file)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--meta-file") from None
    metadata = service.check_metadata({**service.check_metadata(metadata), **meta})
    service.check_group(group)
    settings = _settings()
    rates = load_rates(settings.rates_path)
    uploaded = upload(ContentStore.from_env(bucket), paths)
    with single_connection(str(settings.database_url)) as conn:
        registered = service.register(
            conn, rates, ADMIN, uploaded.files, group, metadata, created_by
        )
    if output == "json":
        files = [f.as_dict() for f in uploaded.files]
        click.echo(
            json.dumps(
                {"id": uploaded.id, "files": files, "uploaded_bytes": uploaded.uploaded_bytes}
            )
        )
    else:
        state = "registered" if registered.created else "already registered"
        click.echo(
            f"dataset {uploaded.id} {state}: {len(uploaded.files)} files, "
            f"{uploaded.uploaded_bytes} bytes uploaded"
        )


@datasets.command("list")
@click.option("--where", "where", multiple=True, help="K=V, K!=V, K>V, K>=V, K<V, K<=V, K~TEXT, K?")
@click.option("--group", help="Only this GitLab group and its subgroups.")
@click.option("--created-by", help="Only datasets registered by this user.")
@click.option("--since", type=click.DateTime(), help="Created at or after (UTC).")
@click.option("--until", type=click.DateTime(), help="Created before (UTC).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, service.MAX_PAGE))
@FORMAT
def list_command(
    where: tuple[str, ...],
    group: str | None,
    created_by: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    output: str,
) -> None:
    """Datasets matching every condition, newest first."""
    filters = service.Filters(
        conditions=tuple(parse_all(list(where))),
        group=group,
        created_by=created_by,
        since=_utc(since),
        until=_utc(until),
    )
    with single_connection(str(_settings().database_url)) as conn:
        found = service.list_datasets(conn, ADMIN, filters, limit=limit)
    _print(found, output)


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


@datasets.command("show")
@click.argument("dataset_id")
def show(dataset_id: str) -> None:
    """One dataset as JSON: files, metadata, owner and the analyses run on it."""
    with single_connection(str(_settings().database_url)) as conn:
        click.echo(json.dumps(service.get(conn, ADMIN, dataset_id), indent=2))
