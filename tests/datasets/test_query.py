"""Finding datasets by metadata, owner and time: CLI, HTTP API and the Python client."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from platform_client import COLUMNS, Platform, PlatformError

from bridge.auth import ADMIN, add_client
from bridge.billing import load_rates
from bridge.cli import main
from bridge.datasets import service
from bridge.datasets.manifest import FileEntry
from bridge.datasets.query import InvalidCondition, parse
from tests.fixtures.bridge import ADMIN_TOKEN, BridgeProcess

ROWS: list[tuple[str, dict[str, Any]]] = [
    ("lab", {"operator": "charlie", "experiment": "ARB-diff", "date": "2026-05-03", "temp": 9}),
    ("lab", {"operator": "charlie", "experiment": "ARB-diff", "date": "2026-04-20", "temp": 10}),
    (
        "lab/imaging",
        {"operator": "dana", "experiment": "ARB-ctrl", "date": "2026-06-01", "temp": 100},
    ),
    ("lab", {"operator": "charlie", "experiment": "baseline", "date": "2026-07-01"}),
    ("other", {"operator": "charlie", "experiment": "ARB-diff", "date": "2026-08-01", "temp": 12}),
]


def _register(db_url: str, rates_file: Path) -> list[str]:
    rates = load_rates(rates_file)
    ids = []
    with psycopg.connect(db_url, autocommit=True) as conn:
        for number, (group, metadata) in enumerate(ROWS):
            digest = hashlib.sha256(f"file {number}".encode()).hexdigest()
            files = [FileEntry(f"f{number}.csv", number + 1, digest)]
            registered = service.register(conn, rates, ADMIN, files, group, metadata, "ada")
            ids.append(registered.dataset["id"])
    return ids


@pytest.fixture
def ids(db_url: str, rates_file: Path) -> list[str]:
    return _register(db_url, rates_file)


def _cli(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, ["datasets", "list", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (["operator=charlie", "experiment=ARB-diff", "date>=2026-05-01"], [0, 4]),
        (["temp>9"], [1, 2, 4]),
        (["temp>=100"], [2]),
        (["temp<10"], [0]),
        (["temp<=10"], [0, 1]),
        (["temp=10"], [1]),
        (["temp?"], [0, 1, 2, 4]),
        (["experiment~arb"], [0, 1, 2, 4]),
        (["experiment!=ARB-diff"], [2, 3]),
        (['operator=["dana","nobody"]'], [2]),
    ],
)
def test_conditions_from_the_cli(
    bridge_env: dict[str, str], ids: list[str], where: list[str], expected: list[int]
) -> None:
    args = [arg for condition in where for arg in ("--where", condition)]
    found = json.loads(_cli(bridge_env, *args, "--format", "json"))

    assert sorted(d["id"] for d in found) == sorted(ids[i] for i in expected)
    assert all(
        set(d) == {"id", "group", "metadata", "files", "created_at", "created_by"} for d in found
    )


def test_numbers_compare_as_numbers_not_as_text(bridge_env: dict[str, str], ids: list[str]) -> None:
    found = json.loads(_cli(bridge_env, "--where", "temp>9", "--format", "json"))

    # As text, "100" < "9"; as numbers 100 > 9.
    assert ids[2] in {d["id"] for d in found}


def test_group_and_csv_and_table(bridge_env: dict[str, str], ids: list[str]) -> None:
    csv_out = _cli(bridge_env, "--group", "lab", "--format", "csv").splitlines()
    table = _cli(bridge_env, "--group", "lab/imaging")

    assert csv_out[0] == "id,group,created_at,created_by,file_count,total_bytes,metadata"
    assert sorted(line.split(",")[0] for line in csv_out[1:]) == sorted(
        ids[i] for i in (0, 1, 2, 3)
    )
    assert table.splitlines()[0].split() == [
        "ID",
        "GROUP",
        "CREATED",
        "(UTC)",
        "FILES",
        "BYTES",
        "METADATA",
    ]
    assert ids[2][:12] in table
    assert ids[0][:12] not in table


def test_a_bad_condition_is_one_line(bridge_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["datasets", "list", "--where", "=x"], env=bridge_env)

    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot read condition '=x'")
    with pytest.raises(InvalidCondition):
        parse("a..b=1")


def test_the_api_filters_pages_and_hides_other_clients(
    api: TestClient, ids: list[str], db: psycopg.Connection
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    lab = {"Authorization": f"Bearer {add_client(db, 'lab')}"}

    first = api.get(
        "/api/v1/datasets", params={"where": "operator=charlie", "limit": 2}, headers=admin
    ).json()
    query = {"where": "operator=charlie", "limit": 2, "after": first["next"]}
    second = api.get("/api/v1/datasets", params=query, headers=admin).json()
    as_lab = api.get("/api/v1/datasets", params={"where": "operator=charlie"}, headers=lab).json()
    bad = api.get("/api/v1/datasets", params={"where": "=oops"}, headers=admin)

    paged = [d["id"] for d in first["datasets"] + second["datasets"]]
    assert sorted(paged) == sorted(ids[i] for i in (0, 1, 3, 4))
    assert len(set(paged)) == 4
    assert sorted(d["id"] for d in as_lab["datasets"]) == sorted(ids[i] for i in (0, 1, 3))
    assert api.get(f"/api/v1/datasets/{ids[4]}", headers=lab).status_code == 404
    assert api.get(f"/api/v1/datasets/{ids[0]}", headers=lab).json()["files"][0]["path"] == "f0.csv"
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_condition"


def test_the_python_client_returns_the_documented_dataframe(
    bridge_server: BridgeProcess, ids: list[str]
) -> None:
    with Platform(bridge_server.url, ADMIN_TOKEN) as platform:
        df = platform.datasets(
            where=["operator=charlie", "experiment=ARB-diff", "date>=2026-05-01"]
        )
        with pytest.raises(PlatformError, match="422 cannot read condition"):
            platform.datasets(where=["?"])

    assert list(df.columns) == [*COLUMNS, "metadata.date", "metadata.experiment",
                                "metadata.operator", "metadata.temp"]  # fmt: skip
    assert sorted(df["id"]) == sorted([ids[0], ids[4]])
    assert str(df["created_at"].dtype) == "datetime64[us, UTC]"
    assert set(df["metadata.temp"]) == {9, 12}
    assert isinstance(df, pd.DataFrame)


def test_the_client_imports_nothing_of_the_server() -> None:
    source = Path(__file__).parents[2] / "bridge" / "client" / "platform_client"
    imported = set()
    for path in source.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    assert imported == {
        "__future__",
        "collections",
        "os",
        "time",
        "typing",
        "httpx",
        "pandas",
        "platform_client",
    }
