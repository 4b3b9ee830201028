"""`bridge`: the command line of the bridge service (a thin face over the same services)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click

from bridge import invoices, ledger, reports
from bridge import reconcile as reconciliation
from bridge.analyses import cli as analyses_cli
from bridge.auth import (
    HostTaken,
    InvalidSlug,
    InvalidToken,
    SlugTaken,
    add_client,
    add_collector,
    register_collector,
)
from bridge.billing import Rates, RatesFileError, canonical_client, load_rates, validate_period
from bridge.collector import service as collector_service
from bridge.datasets import cli as datasets_cli
from bridge.gitlab.api import GitLabApi, GitLabError
from bridge.gitlab.normalize import facts_of
from bridge.hooksync import Change, HookTarget, ProjectResult, sync_all
from bridge.reconcile import SweepResult
from bridge.settings import SETTINGS, ConfigError, Settings
from bridge.storage import migrate as migrations
from bridge.storage.database import DatabaseUnavailable, single_connection

log = logging.getLogger("bridge")

# Failures a user can fix: a short message and exit 1, never a traceback.
EXPECTED_ERRORS = (
    ConfigError,
    RatesFileError,
    DatabaseUnavailable,
    invoices.UnknownClient,
    invoices.FinalizeRefused,
    SlugTaken,
    HostTaken,
    GitLabError,
    reconciliation.Interrupted,
)


def _environment_help() -> str:
    lines = ["\b", "Configuration (environment variables):"]
    lines += [f"  {s.env:<28} {s.help}" for s in SETTINGS]
    return "\n".join(lines)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EXPECTED_ERRORS as exc:
            message = f"unknown client {exc}" if isinstance(exc, invoices.UnknownClient) else exc
            raise click.ClickException(str(message)) from None


def setting_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """CLI flags for the named (non-secret) settings, each also read from its variable."""
    by_name = {s.name: s for s in SETTINGS}

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            setting = by_name[name]
            command = click.option(
                f"--{name.replace('_', '-')}",
                name,
                envvar=setting.env,
                show_envvar=True,
                help=setting.help,
            )(command)
        return command

    return decorate


def _settings(**overrides: Any) -> Settings:
    return Settings.from_env(**overrides)


def _rates(settings: Settings) -> Rates:
    return load_rates(settings.rates_path)


def _period(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return validate_period(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(cls=_Group, epilog=_environment_help())
@click.version_option(package_name="bridge")
def main() -> None:
    """The bridge: GitLab job events in, an exactly-once usage ledger and invoices out."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@main.command()
def migrate() -> None:
    """Apply pending database migrations (running it again is a no-op)."""
    settings = _settings()
    settings.require("database_url")
    with single_connection(str(settings.database_url)) as conn:
        applied = migrations.migrate(conn)
    if applied:
        for migration in applied:
            click.echo(f"applied {migration.version:04d}_{migration.name}")
    else:
        click.echo("database schema is up to date")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option("--access-log/--no-access-log", default=False, help="Log every HTTP request.")
@setting_options("rates_file", "gitlab_url", "public_url", "id_token_audience", "jwks_url")
def serve(host: str, port: int, access_log: bool, **overrides: Any) -> None:
    """Serve the HTTP API (webhooks, usage, invoices, health, metrics)."""
    import uvicorn

    from bridge.api.app import create_app

    settings = _settings(**overrides)
    app = create_app(settings)
    _warn_if_rates_changed(settings, app.state.bridge.rates)
    log.info("serving on http://%s:%s for GitLab %s", host, port, settings.instance)
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_config=None,
        # SIGTERM: stop accepting, let in-flight requests finish (each is one short txn).
        timeout_graceful_shutdown=30,
    )


def _warn_if_rates_changed(settings: Settings, rates: Rates) -> None:
    try:
        with single_connection(str(settings.database_url)) as conn, conn.transaction():
            changed = ledger.rates_changed_since_build(conn, rates)
    except DatabaseUnavailable as exc:
        log.warning("database not reachable yet (%s); serving anyway, /readyz says when", exc)
        return
    if changed:
        log.warning(
            "the rates file's classes or client mapping changed since the ledger was built: "
            "run `bridge rebuild` so existing jobs are classified by the new rules"
        )


@main.group()
def clients() -> None:
    """Billing clients and their API tokens."""


@clients.command("add")
@click.argument("slug")
def clients_add(slug: str) -> None:
    """Register client SLUG and print its API token (shown this once, stored only hashed)."""
    settings = _settings()
    settings.require("database_url")
    slug = _client_id(None, None, slug)
    try:
        with single_connection(str(settings.database_url)) as conn, conn.transaction():
            token = add_client(conn, slug)
    except InvalidSlug as exc:
        raise click.BadParameter(str(exc), param_hint="SLUG") from None
    click.echo(token)
    click.echo(f"client {slug} added; store the token now, it cannot be shown again", err=True)


def _client_id(_ctx: click.Context | None, _param: click.Parameter | None, value: str) -> str:
    """The canonical client id of a group path or client id: lower-case, and mapped through
    the rates file's `clients:` when one is configured."""
    settings = _settings()
    if settings.rates_file:
        return _rates(settings).client_of(value)
    return canonical_client(value)


def _client_period_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--period", required=True, callback=_period, help="UTC month, YYYY-MM.")(
        command
    )
    return click.option(
        "--client", required=True, callback=_client_id,
        help="Billing client id (or a GitLab group path that bills to it; any case).",
    )(command)  # fmt: skip


def _print_document(document: dict[str, Any], output: str) -> None:
    if output == "json":
        click.echo(json.dumps(document, indent=2))
    elif output == "csv":
        click.echo(reports.to_csv(document), nl=False)
    else:
        click.echo(reports.to_table(document))


@main.command()
@_client_period_options
@click.option(
    "--format", "output", type=click.Choice(["table", "json", "csv"]), default="table",
    show_default=True,
)  # fmt: skip
@setting_options("rates_file")
def usage(client: str, period: str, output: str, **overrides: Any) -> None:
    """Usage of CLIENT in PERIOD, priced, with any conflicting facts listed."""
    settings = _settings(**overrides)
    settings.require("database_url")
    rates = _rates(settings)
    with single_connection(str(settings.database_url)) as conn:
        document = invoices.document(conn, rates, client, period)
    _print_document(document, output)


@main.command()
@_client_period_options
@click.option(
    "--format", "output", type=click.Choice(["json", "csv"]), default="json", show_default=True
)
@click.option("--finalize", is_flag=True, help="Freeze the invoice: it never changes again.")
@click.option("--force", is_flag=True, help="Finalize even though the checks say it is early.")
@setting_options("rates_file")
def invoice(
    client: str, period: str, output: str, finalize: bool, force: bool, **overrides: Any
) -> None:
    """The invoice of CLIENT for PERIOD; with --finalize, freeze it."""
    settings = _settings(**overrides)
    settings.require("database_url")
    rates = _rates(settings)
    with single_connection(str(settings.database_url)) as conn:
        if finalize:
            done = invoices.finalize(
                conn, rates, client, period, now=datetime.now(UTC), force=force
            )
            if force and not done.already:
                log.warning("invoice %s %s finalized with --force", client, period)
            state = "was already finalized" if done.already else "is now finalized"
            click.echo(f"invoice {client} {period} {state}", err=True)
            document = done.document
        else:
            document = invoices.document(conn, rates, client, period)
    _print_document(document, output)


@main.command()
@setting_options("rates_file")
def rebuild(**overrides: Any) -> None:
    """Recompute the ledger from every stored event (finalized invoices stay as issued)."""
    settings = _settings(**overrides)
    settings.require("database_url")
    rates = _rates(settings)

    def progress(done: int) -> None:
        click.echo(f"replayed {done} events", err=True)

    with single_connection(str(settings.database_url)) as conn:
        replayed = ledger.rebuild(conn, rates, facts_of, progress)
    click.echo(f"ledger rebuilt from {replayed} stored events")


# --- reconciliation and hook provisioning (GitLab's API) ------------------------------


def _gitlab_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option(
        "--retries", default=4, show_default=True, type=click.IntRange(0, 20),
        help="Retries of a GitLab API call that failed transiently (backoff 1, 2, 4 s ...).",
    )(command)  # fmt: skip
    return click.option(
        "--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
        help="Seconds to wait for each GitLab API answer.",
    )(command)  # fmt: skip


def _gitlab_api(settings: Settings, timeout: float, retries: int) -> GitLabApi:
    settings.require("gitlab_url", "gitlab_token")
    return GitLabApi(settings.instance, str(settings.gitlab_token), timeout=timeout,
                     retries=retries)  # fmt: skip


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and SIGINT end the current sweep or sampling cleanly instead of mid-write."""
    stop = threading.Event()
    previous = {
        number: signal.signal(number, lambda _signo, _frame: stop.set())
        for number in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class _ProgressBar:
    """Reconciliation progress on a terminal: one bar over the projects."""

    def __init__(self) -> None:
        self._bar: Any = None

    def projects(self, total: int) -> None:
        self._bar = click.progressbar(length=total, label="reconciling", file=sys.stderr,
                                      item_show_func=lambda path: path)  # fmt: skip
        self._bar.__enter__()

    def batch(self, project: str, listed: int, recorded: int) -> None:
        pass

    def project_done(self, project: str) -> None:
        self._bar.update(1, project)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


class _ProgressLog:
    """Reconciliation progress anywhere else: one log line per batch of jobs."""

    def projects(self, total: int) -> None:
        log.info("reconciling %d projects", total)

    def batch(self, project: str, listed: int, recorded: int) -> None:
        log.info("%s: %d jobs listed, %d recorded", project, listed, recorded)

    def project_done(self, project: str) -> None:
        pass

    def close(self) -> None:
        pass


@main.command()
@click.option(
    "--every",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="Keep running: start a sweep every SECONDS (a service; SIGTERM stops it).",
)
@_gitlab_options
@setting_options("rates_file", "gitlab_url")
def reconcile(every: float | None, timeout: float, retries: int, **overrides: Any) -> None:
    """Fill the ledger from GitLab's Jobs API: every finished job webhooks missed."""
    settings = _settings(**overrides)
    settings.require("database_url", "gitlab_url", "gitlab_token")
    rates = _rates(settings)
    with _stop_on_signals() as stop:
        _reconcile(settings, rates, every, timeout, retries, stop)


def _reconcile(
    settings: Settings,
    rates: Rates,
    every: float | None,
    timeout: float,
    retries: int,
    stop: threading.Event,
) -> None:
    def sweep_once() -> SweepResult:
        api = _gitlab_api(settings, timeout, retries)
        progress = _ProgressBar() if sys.stderr.isatty() and every is None else _ProgressLog()
        try:
            with single_connection(str(settings.database_url)) as conn:
                return reconciliation.sweep(conn, api, rates, settings.instance,
                                            progress=progress, stop=stop,
                                            relist=settings.reconcile_relist_ids)  # fmt: skip
        finally:
            progress.close()

    if every is not None:
        log.info("reconciling %s every %g s", settings.instance, every)
        reconciliation.run_every(every, sweep_once, stop)
        return
    result = sweep_once()
    if not result.completed:
        raise click.ClickException(reconciliation.describe(result) + ": "
                                   + "; ".join(result.failures))  # fmt: skip
    click.echo(reconciliation.describe(result))


@main.group()
def hooks() -> None:
    """Project hooks that send GitLab's job and pipeline events to the bridge."""


@hooks.command("sync")
@click.option(
    "--reset-tokens",
    is_flag=True,
    help="Also set the token of hooks that have one (after a new BRIDGE_WEBHOOK_TOKEN).",
)
@_gitlab_options
@setting_options("gitlab_url", "public_url")
def hooks_sync(reset_tokens: bool, timeout: float, retries: int, **overrides: Any) -> None:
    """Give every project exactly one correct hook to the bridge (a second run changes nothing)."""
    settings = _settings(**overrides)
    target = HookTarget.from_settings(settings)
    api = _gitlab_api(settings, timeout, retries)
    projects = list(api.projects())

    def report(project: dict[str, Any], result: ProjectResult) -> None:
        if result.change is not Change.UNCHANGED or result.removed:
            log.info("%s: %s", project["path_with_namespace"], result.describe())

    summary = sync_all(api, target, projects, reset_tokens=reset_tokens, report=report)
    if summary.failures:
        raise click.ClickException(summary.describe())
    click.echo(summary.describe())


# --- measured usage (runner hosts) ----------------------------------------------------


@main.group()
def collectors() -> None:
    """Usage collectors of the runner hosts and their tokens."""


@collectors.command("add")
@click.argument("hostname")
@click.option(
    "--token-stdin",
    is_flag=True,
    help="Register the token read from stdin instead of making one (idempotent).",
)
def collectors_add(hostname: str, token_stdin: bool) -> None:
    """Register HOSTNAME's collector; prints a new token once, or takes one from stdin."""
    settings = _settings()
    settings.require("database_url")
    given = sys.stdin.read().strip() if token_stdin else None
    try:
        with single_connection(str(settings.database_url)) as conn, conn.transaction():
            if given is None:
                token = add_collector(conn, hostname)
            else:
                outcome = register_collector(conn, hostname, given)
    except InvalidSlug as exc:
        raise click.BadParameter(str(exc), param_hint="HOSTNAME") from None
    except InvalidToken as exc:
        raise click.BadParameter(str(exc), param_hint="--token-stdin") from None
    if given is None:
        click.echo(token)
        click.echo(f"collector {hostname} added; store the token now, it cannot be shown again",
                   err=True)  # fmt: skip
    else:
        click.echo(f"collector {hostname} {outcome}")


@main.command()
@setting_options("public_url", "collector_spool_dir", "collector_interval")
def collect(**overrides: Any) -> None:
    """Measure this runner host's job containers and post their usage to the bridge."""
    with _stop_on_signals() as stop:
        collector_service.run(_settings(**overrides), stop)


# Datasets and analyses keep their commands beside their services.
main.add_command(datasets_cli.datasets)
main.add_command(analyses_cli.analyses)
