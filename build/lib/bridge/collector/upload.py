"""Posting samples to the bridge, telling apart "try again later" from "never".

Unreachable, timeouts, 429 and 5xx (the bridge answers 503 while Postgres is down): the
samples stay in the spool. A 401/403 is a configuration problem that fixing the token
solves, so those stay too (and every attempt says so in the log). Any other 4xx means the
bridge will never take these samples: they are logged and dropped, so one bad batch cannot
block the others forever.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

log = logging.getLogger("bridge.collector")

BATCH = 500  # samples per request (the bridge takes up to 1000)
_RETRY_LATER = {401, 403, 408, 429}


class Uploader:
    def __init__(self, public_url: str, token: str, *, timeout: float = 10.0) -> None:
        self.url = public_url.rstrip("/") + "/api/v1/usage-samples"
        self._client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def send(self, samples: list[dict[str, Any]]) -> tuple[list[str], str | None]:
        """Post in batches; returns the container ids that are done with (accepted, or
        refused for good) and why the rest must wait (None if nothing must)."""
        done: list[str] = []
        for start in range(0, len(samples), BATCH):
            batch = samples[start : start + BATCH]
            ids = [sample["container_id"] for sample in batch]
            try:
                response = self._client.post(self.url, json={"samples": batch})
            except httpx.HTTPError as exc:
                return done, f"bridge unreachable ({type(exc).__name__})"
            status = response.status_code
            if status < 300:
                done += ids
            elif status >= 500 or status in _RETRY_LATER:
                return done, f"bridge answered {status}: {_message(response)}"
            else:
                log.error(
                    "bridge refused %d samples for good (%d: %s); dropped",
                    len(batch),
                    status,
                    _message(response),
                )
                done += ids
        return done, None


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
