"""Every setting of the bridge, declared once: name, environment variable, help.

Secrets are read from the environment only (a command-line flag would show in `ps`);
the other settings are also CLI flags, added by `bridge.cli` from this table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path


class ConfigError(RuntimeError):
    """A required setting is missing or unusable; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    help: str
    secret: bool = False


SETTINGS = (
    Setting("database_url", "BRIDGE_DATABASE_URL", "Postgres URL of the ledger.", secret=True),
    Setting("webhook_token", "BRIDGE_WEBHOOK_TOKEN", "Secret token GitLab sends in X-Gitlab-Token.",
            secret=True),
    Setting("webhook_signing_key", "BRIDGE_WEBHOOK_SIGNING_KEY",
            "Optional whsec_... key: then every webhook must carry a valid webhook-signature.",
            secret=True),
    Setting("admin_token", "BRIDGE_ADMIN_TOKEN", "Bearer token of the operator (sees everything).",
            secret=True),
    Setting("rates_file", "BRIDGE_RATES_FILE", "Path of the rates file (YAML)."),
    Setting("gitlab_url", "BRIDGE_GITLAB_URL",
            "GitLab's external URL: identifies the instance and is the ID-token issuer."),
    Setting("gitlab_token", "BRIDGE_GITLAB_TOKEN",
            "Admin API token for reconciliation and hook provisioning.", secret=True),
    Setting("public_url", "BRIDGE_PUBLIC_URL",
            "URL GitLab and jobs use to reach the bridge (project hooks, ID-token audience)."),
    Setting("id_token_audience", "BRIDGE_ID_TOKEN_AUDIENCE",
            "Expected `aud` of CI ID tokens (default: BRIDGE_PUBLIC_URL)."),
    Setting("jwks_url", "BRIDGE_JWKS_URL",
            "Where to fetch GitLab's signing keys (default: <gitlab>/oauth/discovery/keys)."),
    Setting("collector_token", "BRIDGE_COLLECTOR_TOKEN",
            "This runner host's collector token (`bridge collectors add HOST`).", secret=True),
    Setting("collector_spool_dir", "BRIDGE_COLLECTOR_SPOOL_DIR",
            "Where the collector keeps its state and unsent samples "
            "(default: /var/lib/bridge-collector)."),
    Setting("collector_interval", "BRIDGE_COLLECTOR_INTERVAL",
            "Seconds between two samples of the job containers (default: 5)."),
    Setting("max_webhook_bytes", "BRIDGE_MAX_WEBHOOK_BYTES",
            "Largest webhook body accepted, in bytes (default: 26214400, GitLab's own cap)."),
    Setting("max_run_bytes", "BRIDGE_MAX_RUN_BYTES",
            "Largest POST /api/v1/runs body, in bytes (default: 1048576)."),
    Setting("max_samples_bytes", "BRIDGE_MAX_SAMPLES_BYTES",
            "Largest POST /api/v1/usage-samples body, in bytes (default: 1048576)."),
    Setting("max_other_bytes", "BRIDGE_MAX_OTHER_BYTES",
            "Largest body of any other request, in bytes (default: 65536)."),
    Setting("ingest_timeout", "BRIDGE_INGEST_TIMEOUT",
            "Seconds a webhook waits for its commit before the answer is 503 (default: 5)."),
    Setting("reconcile_relist_ids", "BRIDGE_RECONCILE_RELIST_IDS",
            "Each sweep lists again the job ids this far below a project's watermark, for "
            "jobs that committed late (default: 1000)."),
    Setting("datasets_bucket", "BRIDGE_DATASETS_BUCKET",
            "S3 bucket of the dataset store (default: datasets); S3 itself comes from "
            "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."),
    Setting("max_manifest_bytes", "BRIDGE_MAX_MANIFEST_BYTES",
            "Largest POST /api/v1/datasets body (a dataset's manifest), in bytes "
            "(default: 16777216)."),
)  # fmt: skip


def _number(name: str, value: object, kind: object) -> object:
    """Numeric settings arrive as text from the environment: convert them, or name the
    variable that is wrong. Every numeric setting is a positive quantity."""
    if kind not in ("int", "float") or not isinstance(value, str):
        return value
    env = next(s.env for s in SETTINGS if s.name == name)
    try:
        number = int(value) if kind == "int" else float(value)
    except ValueError:
        number = 0
    if not 0 < number < 2**63:
        raise ConfigError(
            f"{env} must be a positive {'integer' if kind == 'int' else 'number'}, got {value!r}"
        )
    return number


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    webhook_token: str | None = None
    webhook_signing_key: str | None = None
    admin_token: str | None = None
    rates_file: str | None = None
    gitlab_url: str | None = None
    gitlab_token: str | None = None
    public_url: str | None = None
    id_token_audience: str | None = None
    jwks_url: str | None = None
    collector_token: str | None = None
    collector_spool_dir: str = "/var/lib/bridge-collector"
    collector_interval: str = "5"
    # Numbers: converted (and checked) by `from_env`.
    max_webhook_bytes: int = 25 * 1024 * 1024
    max_run_bytes: int = 1024 * 1024
    max_samples_bytes: int = 1024 * 1024
    max_other_bytes: int = 64 * 1024
    ingest_timeout: float = 5.0
    reconcile_relist_ids: int = 1000
    max_manifest_bytes: int = 16 * 1024 * 1024
    datasets_bucket: str = "datasets"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: object) -> Settings:
        """Environment first, then explicit (CLI) overrides that are not None."""
        values: dict[str, object] = {
            s.name: environ[s.env] for s in SETTINGS if environ.get(s.env, "").strip()
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        kinds = {f.name: f.type for f in fields(cls)}
        return cls(
            **{k: _number(k, v, kinds[k]) for k, v in values.items() if k in kinds}  # type: ignore[arg-type]
        )

    def require(self, *names: str) -> None:
        missing = [s for s in SETTINGS if s.name in names and not getattr(self, s.name)]
        if missing:
            raise ConfigError(
                "missing configuration: " + "; ".join(f"{s.env} ({s.help})" for s in missing)
            )

    @property
    def instance(self) -> str:
        """The GitLab instance part of every job's identity: its URL without trailing slash."""
        self.require("gitlab_url")
        return str(self.gitlab_url).rstrip("/")

    @property
    def rates_path(self) -> Path:
        self.require("rates_file")
        return Path(str(self.rates_file))

    @property
    def audience(self) -> str:
        if self.id_token_audience:
            return self.id_token_audience
        self.require("public_url")
        return str(self.public_url)

    @property
    def jwks(self) -> str:
        return self.jwks_url or f"{self.instance}/oauth/discovery/keys"

    @property
    def collector_interval_seconds(self) -> float:
        try:
            seconds = float(self.collector_interval)
        except ValueError:
            seconds = 0.0
        if not 0.1 <= seconds <= 3600:
            raise ConfigError(
                f"BRIDGE_COLLECTOR_INTERVAL must be a number of seconds between 0.1 and 3600, "
                f"got {self.collector_interval!r}"
            )
        return seconds
