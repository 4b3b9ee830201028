"""A thin client of the bridge's HTTP API (`/api/v1/datasets`, `/api/v1/analyses`)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

import httpx
import pandas as pd

# The DataFrame of `Platform.datasets`: these columns first, then one `metadata.<key>`
# column per metadata key found (nested keys joined with dots), sorted by key.
COLUMNS = ("id", "group", "created_at", "created_by", "file_count", "total_bytes", "files")
DONE = ("succeeded", "failed", "canceled")


class PlatformError(RuntimeError):
    """The bridge refused the request; the message is its error message."""


class Platform:
    def __init__(
        self, url: str | None = None, token: str | None = None, *, timeout: float = 60.0
    ) -> None:
        url = url or os.environ.get("PLATFORM_URL")
        token = token or os.environ.get("PLATFORM_TOKEN")
        if not url or not token:
            raise PlatformError("set PLATFORM_URL and PLATFORM_TOKEN (your client token)")
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise PlatformError(f"{method} {path}: {response.status_code} {message}")
        return response.json()

    def dataset_records(
        self,
        where: Iterable[str] = (),
        *,
        group: str | None = None,
        created_by: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every matching dataset as the API returns it, following the pages."""
        params: dict[str, Any] = {"where": list(where), "limit": 1000}
        for name, value in (
            ("group", group), ("created_by", created_by), ("since", since), ("until", until),
        ):  # fmt: skip
            if value is not None:
                params[name] = value
        found: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", "/api/v1/datasets", params=params)
            found += page["datasets"]
            if not page["next"]:
                return found
            params["after"] = page["next"]

    def datasets(self, where: Iterable[str] = (), **filters: Any) -> pd.DataFrame:
        """Matching datasets as a DataFrame (columns: COLUMNS, then `metadata.<key>`)."""
        records = self.dataset_records(where, **filters)
        base = pd.DataFrame([{c: r[c] for c in COLUMNS} for r in records], columns=list(COLUMNS))
        base["created_at"] = pd.to_datetime(base["created_at"], utc=True)
        metadata = pd.json_normalize([r["metadata"] for r in records]).add_prefix("metadata.")
        metadata = metadata[sorted(metadata.columns)]
        return pd.concat([base, metadata.set_index(base.index)], axis=1)

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/datasets/{dataset_id}")

    def submit(
        self,
        dataset_id: str,
        analysis: str,
        *,
        variables: dict[str, str] | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        """Start ANALYSIS (`group/project@ref`) on the dataset; the same request again
        returns the first analysis (`created` false) unless `force`."""
        body = {"dataset": dataset_id, "analysis": analysis, "variables": variables or {}}
        return self._call("POST", "/api/v1/analyses", json={**body, "force": force})

    def analysis(self, analysis_id: int) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/analyses/{analysis_id}")

    def wait(self, analysis_id: int, *, every: float = 5.0, timeout: float = 3600) -> dict:
        """Poll until the analysis has finished; returns it (check its `status`)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.analysis(analysis_id)
            if found["status"] in DONE or time.monotonic() > deadline:
                return found
            time.sleep(every)
