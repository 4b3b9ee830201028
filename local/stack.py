"""What `make demo` and `make demo-dev` share: a state folder that remembers the ports of the
services they started, so a later command (`up` again, `down`) finds the same services."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from local.postgres import LocalPostgres
from local.s3 import LocalS3


class LocalStack:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.state_file = state_dir / "state.json"
        self.state: dict[str, Any] = (
            json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        )

    @property
    def services_dir(self) -> Path:
        return self.state_dir / "services"

    def postgres(self) -> LocalPostgres:
        return LocalPostgres(self.state_dir / "postgres", port=self.state["ports"]["postgres"])

    def s3(self) -> LocalS3:
        return LocalS3(self.services_dir, port=self.state["ports"]["s3"])

    def save(self) -> None:
        """Write the state, readable only by its owner (it holds passwords and tokens)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as f:
            json.dump(self.state, f, indent=2)
