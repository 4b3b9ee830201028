"""Run provenance: the CI ID token that proves which job is talking, and the run it reports.

A job of the `train` template posts its run's metadata (MLflow run, image digest, template
version, dataset digests) with the ID token GitLab minted for it (`id_tokens:`). Who the job
is (job, project, pipeline, commit, runner) comes only from the token's signed claims; the
body may repeat those values and is refused when it contradicts them.

The token is checked as gitlab-contracts.md section 2.2 says: RS256 against GitLab's JWKS,
`iss` equal to GitLab's external URL, `aud` equal to this bridge's audience, `exp`/`nbf`
with a small leeway for clock skew between hosts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
import jwt
import psycopg
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.bounds import MAX_BIGINT, Id, NoNul
from bridge.settings import Settings
from bridge.storage import queries

log = logging.getLogger("bridge.provenance")

LEEWAY_SECONDS = 30
# Claims without which a token does not name a job: refused even when correctly signed.
_JOB_CLAIMS = ("job_id", "pipeline_id", "project_path", "sha")


class TokenRejected(Exception):
    """The token does not prove a job's identity; the message says why (HTTP 401)."""


class SigningKeysUnavailable(Exception):
    """GitLab's signing keys cannot be fetched, so the token cannot be checked now (HTTP 503)."""


class SigningKeys:
    """GitLab's ID-token signing keys by `kid`, fetched from its JWKS URL and cached.

    PyJWKClient-style (a cached key set, one refetch when a token names an unknown `kid`, a
    timeout), plus what a service in front of GitLab needs: a refetch for an unknown `kid`
    happens at most once per `cooldown` (tokens with made-up kids cannot make us hammer
    GitLab, or wait on it while it is down); keys already known keep verifying while GitLab
    is unreachable (a GitLab restart must not fail jobs); and a token we cannot check because
    GitLab is away is "unavailable", never "rejected".
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        lifespan: float = 300.0,
        cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.lifespan = lifespan
        self.cooldown = cooldown
        self._clock = clock
        self._keys: dict[str, RSAPublicKey] = {}
        self._fresh_until = float("-inf")
        self._quiet_until = float("-inf")
        self._last_error: str | None = None
        self._lock = threading.Lock()

    def get(self, kid: str) -> RSAPublicKey:
        with self._lock:
            now = self._clock()
            known = kid in self._keys
            stale = now >= self._fresh_until
            if (stale or not known) and now >= self._quiet_until:
                self._refresh(now, quiet_after=not stale)
            key = self._keys.get(kid)
            if key is None and self._last_error is not None:
                # Maybe a key GitLab has and we could not fetch: unchecked, not rejected.
                raise SigningKeysUnavailable(self._last_error)
        if key is None:
            raise TokenRejected(f"unknown signing key: kid {kid!r} is not in {self.url}")
        return key

    def _refresh(self, now: float, *, quiet_after: bool) -> None:
        """Fetch the keys; on failure keep the ones we have and wait `cooldown` to retry."""
        try:
            self._keys = self._fetch()
        except SigningKeysUnavailable as exc:
            log.warning("%s; keys fetched before still verify tokens", exc)
            self._last_error = str(exc)
            self._quiet_until = now + self.cooldown
            return
        self._last_error = None
        self._fresh_until = now + self.lifespan
        if quiet_after:
            self._quiet_until = now + self.cooldown

    def _fetch(self) -> dict[str, RSAPublicKey]:
        try:
            response = httpx.get(self.url, timeout=self.timeout)
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise SigningKeysUnavailable(
                f"cannot fetch the ID-token signing keys from {self.url}: {reason}"
            ) from exc
        if response.status_code != 200:
            raise SigningKeysUnavailable(
                f"{self.url} answered HTTP {response.status_code} instead of the signing keys"
            )
        try:
            document = response.json()
        except ValueError:
            raise SigningKeysUnavailable(f"{self.url} did not answer with JSON") from None
        listed = document.get("keys") if isinstance(document, dict) else None
        keys = {
            jwk["kid"]: key
            for jwk in (listed if isinstance(listed, list) else [])
            if (key := _rs256_public_key(jwk)) is not None
        }
        if not keys:
            raise SigningKeysUnavailable(f"{self.url} lists no RS256 signing key")
        return keys


def _rs256_public_key(jwk: object) -> RSAPublicKey | None:
    """The public key of an RS256 signing JWK with a `kid`; None for anything else."""
    if not (
        isinstance(jwk, dict)
        and isinstance(jwk.get("kid"), str)
        and jwk.get("kty") == "RSA"
        and jwk.get("use", "sig") == "sig"
        and jwk.get("alg", "RS256") == "RS256"
        and isinstance(jwk.get("n"), str)
        and isinstance(jwk.get("e"), str)
        and "d" not in jwk
    ):
        return None
    try:
        key = RSAAlgorithm.from_jwk(jwk)
    except (jwt.InvalidKeyError, ValueError, TypeError):
        return None
    return key if isinstance(key, RSAPublicKey) else None


@dataclass(frozen=True)
class JobIdentity:
    """Who a verified token says is calling. GitLab sends ids as strings (runner_id as an
    int); they are numbers here so they compare with the ledger's and the body's."""

    job_id: int
    pipeline_id: int
    project_path: str
    sha: str
    project_id: int | None
    namespace_path: str | None
    ref: str | None
    runner_id: int | None
    claims: Mapping[str, Any]


class IdTokenVerifier:
    def __init__(
        self, *, issuer: str, audience: str, keys: SigningKeys, leeway: float = LEEWAY_SECONDS
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.keys = keys
        self.leeway = leeway

    @classmethod
    def from_settings(cls, settings: Settings) -> IdTokenVerifier:
        """GitLab's URL is the issuer; raises ConfigError when no audience is configured."""
        return cls(
            issuer=settings.instance, audience=settings.audience, keys=SigningKeys(settings.jwks)
        )

    def verify(self, token: str) -> JobIdentity:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"malformed token: {exc}") from None
        # Issuer and audience first, from the unverified claims: a token meant for someone
        # else gets a precise answer and costs no key lookup. The full check below repeats them.
        self._check_addressed_to_us(header, unverified)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("the token header names no signing key (kid)")
        key = self.keys.get(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token expired (exp is in the past)") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("token not valid yet (nbf or iat is in the future)") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected(f"bad signature: not signed by signing key {kid!r}") from None
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"invalid token: {exc}") from None
        return _identity(claims)

    def _check_addressed_to_us(self, header: Mapping[str, Any], claims: Mapping[str, Any]) -> None:
        if header.get("alg") != "RS256":
            raise TokenRejected(f"algorithm {header.get('alg')!r} refused: only RS256 is accepted")
        if claims.get("iss") != self.issuer:
            raise TokenRejected(
                f"wrong issuer {claims.get('iss')!r}: this bridge trusts {self.issuer!r}"
            )
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or self.audience not in audiences:
            raise TokenRejected(
                f"wrong audience {audience!r}: this bridge's audience is {self.audience!r}"
            )


def _identity(claims: Mapping[str, Any]) -> JobIdentity:
    missing = [name for name in _JOB_CLAIMS if name not in claims]
    if missing:
        raise TokenRejected(f"not a CI job's ID token: no {', '.join(missing)} claim")
    return JobIdentity(
        job_id=_number(claims, "job_id"),
        pipeline_id=_number(claims, "pipeline_id"),
        project_path=_text(claims, "project_path"),
        sha=_text(claims, "sha"),
        project_id=_number(claims, "project_id") if "project_id" in claims else None,
        namespace_path=_text(claims, "namespace_path") if "namespace_path" in claims else None,
        ref=_text(claims, "ref") if "ref" in claims else None,
        runner_id=_number(claims, "runner_id") if "runner_id" in claims else None,
        claims=claims,
    )


def _number(claims: Mapping[str, Any], name: str) -> int:
    value = claims[name]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise TokenRejected(f"claim {name} is not a number: {value!r}")


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims[name]
    if not isinstance(value, str) or not value:
        raise TokenRejected(f"claim {name} is not a non-empty string: {value!r}")
    return value


# --- the body ----------------------------------------------------------------------------

SHA256 = r"^[0-9a-f]{64}$"
SEMVER = r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
PINNED_IMAGE = r"^\S+@sha256:[0-9a-f]{64}$"
# MLflow's own limits for param keys and values.
ParamKey = Annotated[str, Field(min_length=1, max_length=250), NoNul]
ParamValue = Annotated[str, Field(max_length=6000), NoNul]


class Dataset(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Annotated[str, NoNul] = Field(
        min_length=1, max_length=1000, description="file name the job read"
    )
    uri: Annotated[str, NoNul] = Field(
        min_length=1, max_length=2000, description="where it was fetched from"
    )
    sha256: str = Field(pattern=SHA256, description="content digest, 64 lowercase hex")
    size: int | None = Field(default=None, ge=0, le=MAX_BIGINT, description="bytes")


class Runtime(BaseModel):
    """What the job's interpreter measured about itself."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    executor: Literal["container", "shell"]
    python: str = Field(pattern=r"^\d+\.\d+\.\d+\S{0,32}$")
    packages_sha256: str = Field(pattern=SHA256, description="of the sorted name==version lines")


class RunReport(BaseModel):
    """The body of `POST /api/v1/runs`. Strict: no type coercion, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mlflow_run_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,255}$")
    mlflow_experiment_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,256}$")
    mlflow_tracking_uri: Annotated[str, NoNul] | None = Field(
        default=None,
        max_length=2000,
        description="http(s) URL of the MLflow server, for a link to the run; "
        "credentials in it are dropped",
    )
    image: str | None = Field(
        default=None,
        max_length=1000,
        pattern=PINNED_IMAGE,
        description="environment image the job ran in, by digest; null when it ran in no image",
    )
    runtime: Runtime | None = None
    template: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="e.g. train")
    template_version: str | None = Field(
        default=None,
        pattern=SEMVER,
        description="GitLab's resolved catalog version; null for a branch or commit",
    )
    template_sha: str | None = Field(default=None, pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")
    template_reference: str | None = Field(
        default=None, max_length=255, pattern=r"^\S+$", description="the text after @"
    )
    datasets: list[Dataset] = Field(default_factory=list, max_length=1000)
    params: dict[ParamKey, ParamValue] = Field(default_factory=dict, max_length=1000)
    # The job may repeat who it is; these are compared with the token, never used instead.
    job_id: Id | None = None
    pipeline_id: Id | None = None
    project_path: Annotated[str, NoNul] | None = Field(default=None, max_length=1000)
    sha: Annotated[str, NoNul] | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _image_only_where_one_ran(self) -> RunReport:
        shell = self.runtime is not None and self.runtime.executor == "shell"
        if shell and self.image is not None:
            raise ValueError("image: a job of the shell executor ran in no image")
        if not shell and self.image is None:
            raise ValueError("image: required unless runtime.executor is shell")
        return self

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _http_without_credentials(cls, uri: str | None) -> str | None:
        if uri is None:
            return None
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        # user:password@ must not end up in the database (or in every GET of the job).
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    def contradictions(self, identity: JobIdentity) -> list[str]:
        """Every identity field the body states differently from the token."""
        proven = {
            "job_id": identity.job_id,
            "pipeline_id": identity.pipeline_id,
            "project_path": identity.project_path,
            "sha": identity.sha,
        }
        return [
            f"{name}: the body says {stated!r}, the ID token says {value!r}"
            for name, value in proven.items()
            if (stated := getattr(self, name)) is not None and stated != value
        ]

    def reported(self) -> dict[str, Any]:
        """The run as reported, without the identity fields the token already proves."""
        return self.model_dump(
            mode="json", exclude={"job_id", "pipeline_id", "project_path", "sha"}
        )


# --- recording and reading ---------------------------------------------------------------


class Outcome(Enum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


# Distinct reports kept per job, the first included. A job posts once (twice if it reports
# again after a retry of the step); more than this is a bug or abuse, only counted.
MAX_RUN_REPORTS = 5


def record(
    conn: psycopg.Connection, instance: str, identity: JobIdentity, client: str, report: RunReport
) -> Outcome:
    """Append the report of the job `identity` names. Its first report is its provenance;
    an identical repeat is a duplicate; a different one is kept beside it as a conflict,
    up to MAX_RUN_REPORTS in all, and beyond that only counted."""
    run = report.reported()
    fingerprint = hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()
    key = {"instance": instance, "job_id": identity.job_id}
    with conn.transaction():
        conn.execute(queries.LOCK_RUN_JOB, key)
        stored = [row[0] for row in conn.execute(queries.RUN_FINGERPRINTS, key)]
        if stored and stored[0] == fingerprint:
            return Outcome.DUPLICATE
        if fingerprint in stored:
            return Outcome.CONFLICT
        if len(stored) >= MAX_RUN_REPORTS:
            conn.execute(queries.COUNT_RUN_OVERFLOW, {**key, "fingerprint": fingerprint})
            return Outcome.CONFLICT
        conn.execute(
            queries.INSERT_RUN,
            {
                **key,
                **run,
                "project_id": identity.project_id,
                "project_path": identity.project_path,
                "namespace_path": identity.namespace_path,
                "client": client,
                "pipeline_id": identity.pipeline_id,
                "sha": identity.sha,
                "ref": identity.ref,
                "runner_id": identity.runner_id,
                "claims": Jsonb(dict(identity.claims)),
                "runtime": Jsonb(run["runtime"]) if run["runtime"] is not None else None,
                "datasets": Jsonb(run["datasets"]),
                "params": Jsonb(run["params"]),
                "fingerprint": fingerprint,
            },
        )
    return Outcome.RECORDED if not stored else Outcome.CONFLICT


def job_from_run(instance: str, job_id: int, first: Mapping[str, Any]) -> dict[str, Any]:
    """A job GitLab has not reported yet (no webhook so far): what its token proved.
    `status` is null until GitLab's job event arrives."""
    return {
        "id": job_id,
        "instance": instance,
        "project_id": first["project_id"],
        "project_path": first["project_path"],
        "client": first["client"],
        "pipeline_id": first["pipeline_id"],
        "ref": first["ref"],
        "sha": first["sha"],
        "runner_id": first["runner_id"],
        "status": None,
    }


def chain(posts: Sequence[Mapping[str, Any]], uncounted: int = 0) -> dict[str, Any] | None:
    """The provenance of a job from its posts (oldest first) and the number of distinct
    later reports that were only counted; None if it posted none."""
    if not posts:
        return None
    first, *later = posts
    return {
        **_run_json(first),
        "later_posts": [_run_json(post) for post in later],
        "later_posts_not_kept": uncounted,
    }


def _run_json(post: Mapping[str, Any]) -> dict[str, Any]:
    uri, experiment, run = (
        post["mlflow_tracking_uri"],
        post["mlflow_experiment_id"],
        post["mlflow_run_id"],
    )
    return {
        "recorded_at": post["received_at"].isoformat(),
        "pipeline_id": post["pipeline_id"],
        "project_path": post["project_path"],
        "ref": post["ref"],
        "sha": post["sha"],
        "runner_id": post["runner_id"],
        "mlflow": {
            "run_id": run,
            "experiment_id": experiment,
            "tracking_uri": uri,
            "run_url": f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{run}" if uri else None,
        },
        "image": post["image"],
        "image_digest": post["image"].rpartition("@")[2] if post["image"] else None,
        "runtime": post["runtime"],
        "template": {
            "name": post["template"],
            "version": post["template_version"],
            "sha": post["template_sha"],
            "reference": post["template_reference"],
        },
        "datasets": post["datasets"],
        "params": post["params"],
    }
