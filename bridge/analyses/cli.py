"""`bridge analyses submit|list|show` (operator side: the ledger database and GitLab)."""

from __future__ import annotations

import getpass
import json
from typing import Any

import click

from bridge.analyses import service
from bridge.analyses.trigger import GitLabTrigger, TriggerFailed, TriggerRefused
from bridge.auth import ADMIN
from bridge.billing import load_rates
from bridge.datasets.cli import ExpectedErrors
from bridge.settings import Settings
from bridge.storage.database import single_connection


class _Errors(ExpectedErrors):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (
            service.InvalidAnalysis,
            service.UnknownAnalysis,
            TriggerRefused,
            TriggerFailed,
        ) as exc:
            raise click.ClickException(str(exc)) from None


def _variables(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    variables = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE")
        variables[key] = value
    return variables


def _settings(*names: str) -> Settings:
    settings = Settings.from_env()
    settings.require("database_url", "rates_file", "gitlab_url", *names)
    return settings


@click.group(cls=_Errors)
def analyses() -> None:
    """Analyses: pipelines run on a dataset, with status and results."""


@analyses.command("submit")
@click.option("--dataset", "dataset_id", required=True, help="Dataset id (sha256).")
@click.option("--analysis", required=True, help="GROUP/PROJECT@REF of the analysis pipeline.")
@click.option("--var", "variables", multiple=True, callback=_variables, help="KEY=VALUE.")
@click.option("--force", is_flag=True, help="Start a new pipeline even if this ran before.")
@click.option("--created-by", default=getpass.getuser, show_default="your user name")
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def submit(
    dataset_id: str, analysis: str, variables: dict[str, str], force: bool, created_by: str,
    output: str,
) -> None:  # fmt: skip
    """Start ANALYSIS on a dataset (once: the same request again returns the first)."""
    settings = _settings("gitlab_token")
    trigger = GitLabTrigger(settings.instance, str(settings.gitlab_token))
    with single_connection(str(settings.database_url)) as conn:
        submitted = service.submit(
            conn, load_rates(settings.rates_path), settings.instance, trigger, ADMIN,
            dataset_id=dataset_id, analysis=analysis, variables=variables,
            created_by=created_by, force=force,
        )  # fmt: skip
    found = submitted.analysis
    if output == "json":
        keys = ("id", "pipeline_id", "status")
        click.echo(json.dumps({**{k: found[k] for k in keys}, "created": submitted.created}))
    else:
        state = "submitted" if submitted.created else "already submitted"
        click.echo(
            f"analysis {found['id']} {state}: pipeline {found['pipeline_id']}, {found['status']}"
        )


@analyses.command("list")
@click.option("--dataset", "dataset_id", help="Only analyses of this dataset.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 500))
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def list_command(dataset_id: str | None, limit: int, output: str) -> None:
    """Analyses, newest first."""
    settings = _settings()
    with single_connection(str(settings.database_url)) as conn:
        found = service.list_analyses(
            conn, load_rates(settings.rates_path), ADMIN, dataset_id=dataset_id, limit=limit
        )
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    click.echo("ID  STATUS     PIPELINE  ANALYSIS  DATASET")
    for a in found:
        pipeline, dataset = a["pipeline_id"], a["dataset_id"][:12]
        click.echo(f"{a['id']}  {a['status']:<9}  {pipeline}  {a['analysis']}  {dataset}")


@analyses.command("show")
@click.argument("analysis_id", type=int)
def show(analysis_id: int) -> None:
    """One analysis as JSON: status with timestamps, jobs, MLflow runs, usage."""
    settings = _settings()
    with single_connection(str(settings.database_url)) as conn:
        found = service.get(conn, load_rates(settings.rates_path), ADMIN, analysis_id)
    click.echo(json.dumps(found, indent=2))
