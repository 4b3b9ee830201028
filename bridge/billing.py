"""Billing rules: the rates file, runner classes, billable seconds, periods and amounts.

Pure functions over `Decimal`; nothing here knows about HTTP, SQL or GitLab payloads.
The rules are the ones in ARCHITECTURE.md "Billing semantics".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CENT = Decimal("0.01")
SECONDS_PER_MINUTE = Decimal(60)
SECONDS_PER_HOUR = Decimal(3600)
# GitLab statuses after which a job never runs again. `skipped` never ran and is not billed.
BILLABLE_TERMINAL_STATUSES = frozenset({"success", "failed", "canceled"})


class RatesFileError(ValueError):
    """The rates file cannot be used; the message names the file, the key and the problem."""


def _decimal_string(value: object) -> object:
    # Prices are strings in YAML ("0.50") so no float rounding sneaks in; a bare number is
    # accepted only if it is written exactly (an int), never a float.
    if isinstance(value, float):
        raise ValueError('write prices as quoted decimal strings, e.g. "0.50"')
    return value


class RunnerClass(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    match_tags: tuple[str, ...] = ()
    per_minute: Decimal = Field(ge=0)
    # Measured-usage prices (optional): per CPU-hour, per GB-hour of memory, per GPU-hour.
    per_cpu_hour: Decimal | None = Field(default=None, ge=0)
    per_gb_hour: Decimal | None = Field(default=None, ge=0)
    per_gpu_hour: Decimal | None = Field(default=None, ge=0)

    _strings = field_validator(
        "per_minute", "per_cpu_hour", "per_gb_hour", "per_gpu_hour", mode="before"
    )(_decimal_string)

    def matches(self, runner_tags: Iterable[str]) -> bool:
        return set(self.match_tags).issubset(runner_tags)


class HpcPrices(BaseModel):
    """Prices of cluster time that Slurm accounted (`hpc` invoice lines): CPU-hours are
    elapsed x allocated CPUs, GPU-hours elapsed x allocated GPUs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_cpu_hour: Decimal = Field(ge=0)
    per_gpu_hour: Decimal = Field(default=Decimal(0), ge=0)

    _strings = field_validator("per_cpu_hour", "per_gpu_hour", mode="before")(_decimal_string)


class Rates(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = Field(pattern=r"^[A-Z]{3}$")
    classes: tuple[RunnerClass, ...] = Field(min_length=1)
    clients: Mapping[str, str] = Field(default_factory=dict)
    hpc: HpcPrices | None = None

    @field_validator("clients")
    @classmethod
    def _canonical_clients(cls, clients: Mapping[str, str]) -> Mapping[str, str]:
        canonical: dict[str, str] = {}
        for group, client in clients.items():
            key = canonical_client(group)
            if key in canonical and canonical[key] != canonical_client(client):
                raise ValueError(
                    f"group {group!r} is mapped twice (GitLab paths ignore case): "
                    f"to {canonical[key]!r} and to {client!r}"
                )
            canonical[key] = canonical_client(client)
        return canonical

    @field_validator("classes")
    @classmethod
    def _unique_names(cls, classes: tuple[RunnerClass, ...]) -> tuple[RunnerClass, ...]:
        names = [c.name for c in classes]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"class names must be unique, repeated: {', '.join(duplicated)}")
        if not any(not c.match_tags for c in classes):
            # Without a catch-all, a job on an untagged runner would have no price at all.
            raise ValueError("one class must have match_tags: [] so that every job has a class")
        return classes

    def runner_class(self, runner_tags: Iterable[str]) -> str:
        """The first class whose `match_tags` are all among the tags (a catch-all exists)."""
        tags = set(runner_tags)
        return next(c.name for c in self.classes if c.matches(tags))

    def client_of(self, project_path: str) -> str:
        """The billing client: the top-level group (canonical), mapped through `clients:`."""
        group = canonical_client(project_path.split("/", 1)[0])
        return self.clients.get(group, group)

    def groups_of(self, client: str) -> list[str]:
        """Every top-level group that bills to `client` (the inverse of `client_of`)."""
        client = canonical_client(client)
        mapped = [group for group, target in self.clients.items() if target == client]
        if client not in self.clients:
            mapped.append(client)
        return sorted(mapped)

    def by_name(self, name: str) -> RunnerClass:
        return next(c for c in self.classes if c.name == name)

    def classification_digest(self) -> str:
        """Fingerprint of what the stored ledger depends on (class names, tags, client map).

        Prices are applied when invoices are computed, so changing them needs no rebuild.
        """
        basis = {
            "classes": [[c.name, sorted(c.match_tags)] for c in self.classes],
            "clients": dict(sorted(self.clients.items())),
        }
        return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def canonical_client(name: str) -> str:
    """The one spelling of a client id: GitLab group paths are case-insensitive, so
    `AcmeLab`, `acmelab` and `ACMELAB` are one group and one client, written lower-case."""
    return name.strip().lower()


def load_rates(path: str | Path) -> Rates:
    """Read and validate the rates file; any problem raises RatesFileError naming file and key."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RatesFileError(f"{path}: cannot read the rates file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise RatesFileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise RatesFileError(f"{path}: expected a mapping with currency and classes")
    try:
        return Rates.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(top level)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise RatesFileError(f"{path}: {problems}") from exc


def billable_seconds(
    duration: Decimal | None, started_at: datetime | None, finished_at: datetime | None
) -> Decimal:
    """`build_duration` when GitLab sent it, else finished - started; 0 if it never started."""
    if duration is not None:
        seconds = duration
    elif started_at is not None and finished_at is not None:
        seconds = Decimal(str((finished_at - started_at).total_seconds()))
    else:
        seconds = Decimal(0)
    return max(seconds, Decimal(0))


def period_of(moment: datetime) -> str:
    """The UTC calendar month `YYYY-MM` of an aware timestamp."""
    if moment.tzinfo is None:
        raise ValueError("period_of needs a timezone-aware timestamp")
    return moment.astimezone(UTC).strftime("%Y-%m")


def line_amount(seconds: Decimal, per_minute: Decimal) -> tuple[Decimal, Decimal]:
    """(exact, rounded) amount of one invoice line: seconds / 60 * price, half-up to cents."""
    # Multiplying first keeps the quotient exact whenever the amount has a finite decimal form.
    exact = seconds * per_minute / SECONDS_PER_MINUTE
    return exact, exact.quantize(CENT, rounding=ROUND_HALF_UP)


def resource_amount(quantity: Decimal, per_unit: Decimal) -> tuple[Decimal, Decimal]:
    """(exact, rounded) amount of a measured-usage line: quantity * price, half-up to cents."""
    exact = quantity * per_unit
    return exact, exact.quantize(CENT, rounding=ROUND_HALF_UP)


def hourly_amount(seconds: Decimal, per_hour: Decimal) -> tuple[Decimal, Decimal]:
    """(exact, rounded) amount of `seconds` of a resource priced per hour, half-up to cents."""
    exact = seconds * per_hour / SECONDS_PER_HOUR
    return exact, exact.quantize(CENT, rounding=ROUND_HALF_UP)


def invoice_line(
    kind: str,
    runner_class: str,
    jobs: int,
    seconds: Decimal,
    amounts: tuple[Decimal, Decimal],
    *,
    priced_per: tuple[str, Decimal] | None = None,
    for_period: str | None = None,
) -> dict[str, Any]:
    """One invoice line as the API, the CSV report and a finalized invoice show it.

    `amounts` is (exact, rounded) from the amount functions above; `priced_per` is (unit,
    price per unit) for lines not priced per minute; `for_period` marks an adjustment.
    """
    line: dict[str, Any] = {
        "kind": kind,
        "runner_class": runner_class,
        "jobs": jobs,
        "billable_seconds": plain(seconds),
    }
    if priced_per is not None:
        line["unit"], line["unit_price"] = priced_per[0], plain(priced_per[1])
    exact, amount = amounts
    line["amount"] = format(amount, "f")
    line["exact_amount"] = plain(exact)
    if for_period is not None:
        line["for_period"] = for_period
    return line


def plain(value: Decimal) -> str:
    """A decimal as plain text without trailing zeros (600.0 s is "600"), never in exponent
    notation."""
    return format(value.normalize(), "f")


def next_period(period: str) -> str:
    year, month = (int(part) for part in period.split("-"))
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}"


def validate_period(period: str) -> str:
    """`YYYY-MM` with a real month, or ValueError."""
    try:
        parsed = datetime.strptime(period, "%Y-%m")
    except ValueError:
        raise ValueError(f"period must be YYYY-MM, got {period!r}") from None
    if parsed.strftime("%Y-%m") != period:
        raise ValueError(f"period must be YYYY-MM, got {period!r}")
    return period
