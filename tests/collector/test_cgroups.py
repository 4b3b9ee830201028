"""Finding and reading a container's cgroup files under every layout Docker uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.collector.cgroups import CgroupReader, Reading

CID = "4f" * 32


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("version", "group", "parent"),
    [
        (1, f"docker/{CID}", None),  # cgroupfs driver
        (1, f"system.slice/docker-{CID}.scope", None),  # systemd driver
        (1, f"ci-jobs/{CID}", "/ci-jobs"),  # --cgroup-parent, cgroupfs
        (2, f"system.slice/docker-{CID}.scope", None),
        (2, f"docker/{CID}", None),
        (2, f"ci.slice/ci-gpu.slice/docker-{CID}.scope", "ci-gpu.slice"),  # systemd slice
    ],
)
def test_every_layout_is_found_and_read(
    tmp_path: Path, version: int, group: str, parent: str | None
) -> None:
    if version == 1:
        write(tmp_path, f"cpuacct/{group}/cpuacct.usage", "2500000000\n")
        write(tmp_path, f"memory/{group}/memory.usage_in_bytes", "1048576\n")
    else:
        write(tmp_path, "cgroup.controllers", "cpu memory\n")
        write(tmp_path, f"{group}/cpu.stat", "usage_usec 2500000\nuser_usec 2000000\n")
        write(tmp_path, f"{group}/memory.current", "1048576\n")
    reader = CgroupReader(tmp_path)  # the version is detected from the hierarchy
    assert reader.version == version
    location = reader.locate(CID, parent)
    assert location is not None
    assert reader.read(location) == Reading(cpu_seconds=2.5, memory_bytes=1048576)


def test_a_container_that_exits_reads_nothing(tmp_path: Path) -> None:
    write(tmp_path, f"cpuacct/docker/{CID}/cpuacct.usage", "1\n")
    write(tmp_path, f"memory/docker/{CID}/memory.usage_in_bytes", "1\n")
    reader = CgroupReader(tmp_path, version=1)
    location = reader.locate(CID)
    assert location is not None
    (tmp_path / f"cpuacct/docker/{CID}/cpuacct.usage").unlink()
    assert reader.read(location) is None
    assert reader.locate("ab" * 32) is None
