"""One GPU to one user at a time, from an allocation kept in a JSON file beside the hub's database.

Docker does not schedule GPUs: the hub picks one for a user's server when it starts and frees it
when the server stops. The file maps each GPU's device id (index or UUID, as `nvidia-smi -L`
shows it) to the user holding it; a lock on the file keeps two spawns from taking the same GPU.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class NoGpuFree(RuntimeError):
    """Every GPU is allocated to another user."""


class GpuPool:
    def __init__(self, devices: list[str], allocation: Path) -> None:
        self.devices = list(devices)
        self.allocation = allocation

    @contextmanager
    def _held(self) -> Iterator[dict[str, str]]:
        self.allocation.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.allocation, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            text = handle.read()
            holders = json.loads(text) if text.strip() else {}
            # A GPU taken out of the configuration is no longer handed out or held.
            holders = {gpu: user for gpu, user in holders.items() if gpu in self.devices}
            yield holders
            handle.seek(0)
            handle.truncate()
            json.dump(holders, handle, indent=1, sort_keys=True)

    def allocate(self, user: str) -> str:
        """The GPU this user holds, or a free one now given to them."""
        with self._held() as holders:
            for gpu, holder in holders.items():
                if holder == user:
                    return gpu
            for gpu in self.devices:
                if gpu not in holders:
                    holders[gpu] = user
                    return gpu
        raise NoGpuFree(
            f"all {len(self.devices)} GPUs are in use; try again later or start without a GPU"
        )

    def release(self, user: str) -> None:
        with self._held() as holders:
            for gpu in [g for g, holder in holders.items() if holder == user]:
                del holders[gpu]

    def holders(self) -> dict[str, str]:
        with self._held() as holders:
            return dict(holders)
