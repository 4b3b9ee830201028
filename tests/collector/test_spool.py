"""The collector's totals: integration over time, GPU allocation, and the spool file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.collector.containers import gpu_count
from bridge.collector.spool import GIB, Spool, Tracked

CID = "4f" * 32


def test_memory_is_integrated_and_cpu_is_a_counter() -> None:
    tracked = Tracked(CID, job_id=7, project_id=101, started_at=1000.0, gpus=2)
    tracked.add(1004.0, cpu_seconds=1.5, memory_bytes=GIB)  # first reading: 4 s at 1 GiB
    tracked.add(1006.0, cpu_seconds=2.5, memory_bytes=3 * GIB)  # 2 s averaging 2 GiB
    tracked.add(1007.0, cpu_seconds=2.0, memory_bytes=3 * GIB)  # a counter never goes back
    assert tracked.memory_gib_seconds == pytest.approx(4 + 4 + 3)
    assert tracked.cpu_seconds == 2.5
    assert tracked.gpu_seconds == 14.0  # 2 GPUs for 7 s
    sample = tracked.sample()
    assert sample["cpu_seconds"] == "2.500000"
    assert sample["memory_gib_seconds"] == "11.000000"
    assert sample["gpu_seconds"] == "14.000"
    assert sample["started_at"] == "1970-01-01T00:16:40+00:00"


def test_the_spool_survives_a_restart_and_forgets_what_was_delivered(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    ended = Tracked(CID, 7, 101, 1000.0, 0, gone=True)
    running = Tracked("5e" * 32, 8, 101, 1000.0, 1)
    running.add(1010.0, 3.0, GIB)
    spool.tracked = {ended.container_id: ended, running.container_id: running}
    spool.unsent = {ended.container_id, running.container_id}
    spool.save()

    again = Spool(tmp_path)
    again.load()
    assert again.tracked == spool.tracked
    assert again.unsent == spool.unsent
    again.delivered([ended.container_id, running.container_id])
    assert list(again.tracked) == [running.container_id]
    assert again.unsent == set()


@pytest.mark.parametrize(
    ("host_config", "gpus"),
    [
        ({}, 0),
        ({"DeviceRequests": None, "Devices": None}, 0),
        (
            {
                "DeviceRequests": [
                    {"Driver": "", "Count": 0, "DeviceIDs": ["0", "1"], "Capabilities": [["gpu"]]}
                ]
            },
            2,
        ),  # --gpus device=0,1
        (
            {
                "DeviceRequests": [
                    {"Driver": "nvidia", "Count": 1, "DeviceIDs": None, "Capabilities": None}
                ]
            },
            1,
        ),
        ({"DeviceRequests": [{"Driver": "", "Count": 3, "Capabilities": [["compute"]]}]}, 0),
        (
            {
                "Devices": [
                    {"PathOnHost": "/dev/nvidia0"},
                    {"PathOnHost": "/dev/nvidiactl"},
                    {"PathOnHost": "/dev/nvidia1"},
                ]
            },
            2,
        ),
    ],
)
def test_gpu_allocation_from_the_container_config(host_config: dict, gpus: int) -> None:
    assert gpu_count(host_config) == gpus
