"""The billing rules as pure functions: rates file, classes, seconds, periods, rounding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.billing import (
    RatesFileError,
    billable_seconds,
    line_amount,
    load_rates,
    period_of,
    validate_period,
)
from bridge.invoices import adjustment_sources
from tests.fixtures.bridge import RATES_YAML


@pytest.fixture
def rates(tmp_path: Path):
    path = tmp_path / "rates.yml"
    path.write_text(RATES_YAML)
    return load_rates(path)


def test_first_matching_class_wins(rates) -> None:
    assert rates.runner_class(["gpu", "docker", "large"]) == "gpu"
    assert rates.runner_class(["large", "docker"]) == "large"
    assert rates.runner_class(["large"]) == "standard"  # needs both docker and large
    assert rates.runner_class([]) == "standard"


def test_client_is_top_level_group_mapped_through_clients(rates) -> None:
    assert rates.client_of("acme-vision/seg/sub") == "acme"
    assert rates.client_of("acme-nlp/bert") == "acme"
    assert rates.client_of("beta-lab/study") == "beta-lab"
    assert rates.groups_of("acme") == ["acme", "acme-nlp", "acme-vision"]
    assert rates.groups_of("beta-lab") == ["beta-lab"]


def test_billable_seconds_prefers_gitlab_duration() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(seconds=90)
    assert billable_seconds(Decimal("61.5"), start, end) == Decimal("61.5")
    assert billable_seconds(None, start, end) == Decimal(90)
    assert billable_seconds(None, None, end) == 0  # never started
    assert billable_seconds(Decimal("-3"), start, end) == 0


@pytest.mark.parametrize(
    ("moment", "period"),
    [
        (datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC), "2026-10"),
        (datetime(2026, 11, 1, 0, 0, 0, tzinfo=UTC), "2026-11"),
        (datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC), "2025-12"),
        (datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC), "2026-01"),
        # 00:30 on Jan 1st in Berlin is still December in UTC.
        (datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), "2025-12"),
    ],
)
def test_period_is_utc_month_of_finish(moment: datetime, period: str) -> None:
    assert period_of(moment) == period


def test_amount_rounds_half_up_once_per_line() -> None:
    # 45 s at 0.01/min = 0.0075 -> 0.01 (half-up), where banker's rounding would give 0.00.
    assert line_amount(Decimal(45), Decimal("0.01")) == (Decimal("0.0075"), Decimal("0.01"))
    # 1.5 minutes at 0.03 = 0.045 -> 0.05.
    exact, rounded = line_amount(Decimal(90), Decimal("0.03"))
    assert (exact, rounded) == (Decimal("0.045"), Decimal("0.05"))
    # A third of a cent stays exact to many places, rounds down.
    exact, rounded = line_amount(Decimal(1), Decimal("0.20"))
    assert rounded == Decimal("0.00")
    assert str(exact).startswith("0.00333333")


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-01", "2026-01-01", "Jan"])
def test_bad_periods_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        validate_period(text)


@pytest.mark.parametrize(
    ("finalized", "period", "sources"),
    [
        ([], "2026-11", []),
        (["2026-10"], "2026-11", ["2026-10"]),
        (["2026-09", "2026-10"], "2026-11", ["2026-09", "2026-10"]),
        (["2026-09"], "2026-11", []),  # 2026-09's late usage goes to open 2026-10
        (["2026-12"], "2027-01", ["2026-12"]),
    ],
)
def test_late_usage_goes_to_the_next_open_period(finalized, period, sources) -> None:
    assert adjustment_sources(period, finalized) == sources


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("currency: EUR\nclasses: [{name: a, match_tags: [x], per_minute: '1'}]\n",
         "classes: Value error, one class must have match_tags: []"),
        ("currency: EUR\nclasses: [{name: a, match_tags: [], per_minute: 0.5}]\n",
         "classes.0.per_minute: Value error, write prices as quoted decimal strings"),
        ("currency: EUR\nclasses: [{name: a, match_tags: [], per_minute: '-1'}]\n",
         "classes.0.per_minute: Input should be greater than or equal to 0"),
        ("currency: euro\nclasses: [{name: a, match_tags: [], per_minute: '1'}]\n",
         "currency: String should match pattern"),
        ("currency: EUR\nclasses: [{name: a, match_tags: [], per_minute: '1', colour: red}]\n",
         "classes.0.colour: Extra inputs are not permitted"),
        ("currency: EUR\nclasses:\n - {name: a, match_tags: [], per_minute: '1'}\n"
         " - {name: a, match_tags: [], per_minute: '2'}\n",
         "class names must be unique, repeated: a"),
        ("currency: EUR\n", "classes: Field required"),
        ("currency: [EUR\n", "not valid YAML"),
        ("- just a list\n", "expected a mapping"),
    ],
)  # fmt: skip
def test_invalid_rates_file_names_file_key_and_problem(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "rates.yml"
    path.write_text(content)
    with pytest.raises(RatesFileError) as error:
        load_rates(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_missing_rates_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RatesFileError, match=r"nowhere\.yml: cannot read the rates file"):
        load_rates(tmp_path / "nowhere.yml")
