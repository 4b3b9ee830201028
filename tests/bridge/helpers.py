"""Small helpers shared by the bridge tests."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.fixtures.bridge import ADMIN_TOKEN, WEBHOOK_TOKEN

EVENT_HEADERS = {"build": "Job Hook", "pipeline": "Pipeline Hook"}


def hook_headers(payload: dict[str, Any], key: str | None = None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "X-Gitlab-Token": WEBHOOK_TOKEN,
        "X-Gitlab-Event": EVENT_HEADERS.get(payload.get("object_kind", ""), "System Hook"),
        "X-Gitlab-Instance": "https://gitlab.example.com",
        "User-Agent": "GitLab/19.4.0",
    }
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def post_event(
    client: TestClient | httpx.Client, payload: dict[str, Any], key: str | None = None
) -> httpx.Response:
    return client.post(
        "/hooks/gitlab", content=json.dumps(payload), headers=hook_headers(payload, key)
    )


def admin(client: TestClient | httpx.Client, path: str) -> httpx.Response:
    return client.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


def usage(client: TestClient | httpx.Client, client_slug: str, period: str) -> dict[str, Any]:
    response = admin(client, f"/api/v1/usage?client={client_slug}&period={period}")
    assert response.status_code == 200, response.text
    return response.json()
