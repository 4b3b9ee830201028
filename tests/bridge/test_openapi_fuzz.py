"""schemathesis against the bridge's own OpenAPI document: every operation, with requests
that fit the schema and requests that do not, with and without credentials, sent to a real
`bridge serve`; no answer is a 5xx, and every refusal is the JSON error envelope."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import yaml
from schemathesis.generation import GenerationMode

from bridge.api.app import create_app
from bridge.billing import Rates
from bridge.settings import Settings
from local.postgres import LocalPostgres
from tests.fixtures.bridge import (
    ADMIN_TOKEN,
    GITLAB_URL,
    RATES_YAML,
    WEBHOOK_TOKEN,
    BridgeProcess,
    start_bridge,
)
from tests.fixtures.postgres import create_database

CREDENTIALS = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Gitlab-Token": WEBHOOK_TOKEN}
# Per operation and generation mode; bounded so the whole run takes about a minute.
MAX_EXAMPLES = 25


def _document() -> dict[str, Any]:
    """The document `bridge serve` publishes at /openapi.json (building the app opens no
    connection, so no database is needed to read it)."""
    settings = Settings(
        database_url="postgresql:///unused",
        webhook_token=WEBHOOK_TOKEN,
        admin_token=ADMIN_TOKEN,
        rates_file="unused",
        gitlab_url=GITLAB_URL,
    )
    return create_app(settings, rates=Rates.model_validate(yaml.safe_load(RATES_YAML))).openapi()


schema = schemathesis.openapi.from_dict(_document())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES
)


def check(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "request_id"}


@pytest.fixture(scope="module")
def server(
    postgres: LocalPostgres, ledger_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BridgeProcess]:
    """One `bridge serve` for every operation (starting one per operation costs more than
    the requests do)."""
    folder = tmp_path_factory.mktemp("openapi-fuzz")
    rates = folder / "rates.yml"
    rates.write_text(RATES_YAML)
    env = {
        "BRIDGE_DATABASE_URL": create_database(postgres, template=ledger_template),
        "BRIDGE_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
        "BRIDGE_RATES_FILE": str(rates),
        "BRIDGE_GITLAB_URL": GITLAB_URL,
        "BRIDGE_PUBLIC_URL": "https://bridge.example.com",
    }
    process = start_bridge(env, folder / "bridge.log")
    yield process
    process.stop()


@schema.parametrize()
def test_no_request_is_answered_with_a_server_error(case: Any, server: BridgeProcess) -> None:
    check(case.call(base_url=server.url))
    check(case.call(base_url=server.url, headers={**(case.headers or {}), **CREDENTIALS}))
