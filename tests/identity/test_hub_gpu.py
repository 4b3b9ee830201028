"""GPUs: one per user from the platform's allocation, as a Docker device request.

The hub talks to the real Docker daemon through a `socat -v` relay that records every request,
so the test sees the exact device request the spawner sent; this machine has no GPU, so Docker
refuses the container and names the GPU capability, and the allocation is given back.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from platform_hub.gpus import GpuPool, NoGpuFree

from tests.fixtures.dev_hub import Hub, HubFactory

GPUS = ["GPU-test-0", "GPU-test-1"]


@pytest.fixture(scope="module")
def docker_relay(tmp_path_factory: pytest.TempPathFactory, docker_daemon: object) -> Iterator[Path]:
    """A unix socket relaying to the daemon; yields the file where socat writes the traffic."""
    folder = tmp_path_factory.mktemp("docker-relay")
    socket_path, log = folder / "docker.sock", folder / "traffic.log"
    upstream = docker_daemon.host.removeprefix("unix://")  # type: ignore[attr-defined]
    with log.open("wb") as output:
        relay = subprocess.Popen(
            ["socat", "-v", f"UNIX-LISTEN:{socket_path},fork,mode=600", f"UNIX-CONNECT:{upstream}"],
            stderr=output,
        )
    try:
        for _ in range(50):
            if socket_path.exists():
                break
            subprocess.run(["sleep", "0.1"], check=True)
        yield log
    finally:
        relay.terminate()
        relay.wait(timeout=10)


@pytest.fixture(scope="module")
def hub(start_hub: HubFactory, docker_relay: Path) -> Hub:
    relay_socket = docker_relay.parent / "docker.sock"
    return start_hub(env={"HUB_GPUS": ",".join(GPUS), "DOCKER_HOST": f"unix://{relay_socket}"})


def _device_requests(traffic: str) -> list[list[dict[str, object]]]:
    found = []
    decoder = json.JSONDecoder()
    for match in re.finditer(r'"DeviceRequests":\s*', traffic):
        value, _ = decoder.raw_decode(traffic, match.end())
        found.append(value)
    return found


def test_the_spawn_form_offers_a_gpu_profile(hub: Hub) -> None:
    client, _ = hub.logged_in("bob")
    form = client.get(f"{hub.url}/hub/spawn").text
    assert '<option value="gpu">One GPU</option>' in form
    assert '<option value="cpu" selected>' in form


def test_the_users_gpu_reaches_docker_as_a_device_request(hub: Hub, docker_relay: Path) -> None:
    token = hub.api_token("alice")
    with pytest.raises(RuntimeError, match="failed to start"):
        hub.spawn("alice", token, {"profile": "gpu"})
    requests = _device_requests(docker_relay.read_text(errors="replace"))
    assert {
        "Driver": "",
        "Count": 0,
        "DeviceIDs": ["GPU-test-0"],
        "Capabilities": [["gpu"]],
        "Options": {},
    } in [request for sent in requests for request in sent]
    # No GPU on this machine: Docker's refusal names the capability.
    assert 'could not select device driver "" with capabilities: [[gpu]]' in hub.log_text()
    # The failed spawn gave the GPU back.
    assert json.loads((hub.data / "gpu-allocation.json").read_text()) == {}


def test_an_unknown_profile_or_a_cpu_spawn_sends_no_device_request(
    hub: Hub, docker_relay: Path
) -> None:
    token = hub.api_token("carol")
    with pytest.raises(RuntimeError, match="failed to start"):
        hub.spawn("carol", token, {"profile": "tpu"})
    assert "unknown profile 'tpu'" in hub.log_text()
    before = len(_device_requests(docker_relay.read_text(errors="replace")))
    hub.spawn("carol", token, {"profile": "cpu"})
    after = _device_requests(docker_relay.read_text(errors="replace"))
    assert all(not sent for sent in after[before:])


def test_one_gpu_to_one_user_at_a_time(tmp_path: Path) -> None:
    pool = GpuPool(GPUS, tmp_path / "allocation.json")
    assert pool.allocate("alice") == "GPU-test-0"
    assert pool.allocate("bob") == "GPU-test-1"
    assert pool.allocate("alice") == "GPU-test-0"  # a user keeps theirs
    with pytest.raises(NoGpuFree, match="all 2 GPUs are in use"):
        pool.allocate("carol")
    pool.release("alice")
    assert pool.allocate("carol") == "GPU-test-0"
    assert pool.holders() == {"GPU-test-0": "carol", "GPU-test-1": "bob"}
    assert oct((tmp_path / "allocation.json").stat().st_mode & 0o777) == "0o600"


def test_a_gpu_removed_from_the_configuration_is_no_longer_held(tmp_path: Path) -> None:
    GpuPool(GPUS, tmp_path / "allocation.json").allocate("alice")
    smaller = GpuPool(["GPU-test-1"], tmp_path / "allocation.json")
    assert smaller.holders() == {}
    assert smaller.allocate("bob") == "GPU-test-1"


def test_allocations_from_parallel_processes_never_share_a_gpu(tmp_path: Path) -> None:
    allocation = tmp_path / "allocation.json"
    script = (
        "import sys; from pathlib import Path; from platform_hub.gpus import GpuPool, NoGpuFree\n"
        "pool = GpuPool(sys.argv[1].split(','), Path(sys.argv[2]))\n"
        "try: print(pool.allocate(sys.argv[3]))\n"
        "except NoGpuFree: print('none')\n"
    )
    devices = ",".join(f"GPU-{n}" for n in range(4))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, devices, str(allocation), f"user{n}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    got = [worker.communicate(timeout=60)[0].strip() for worker in workers]
    given = [gpu for gpu in got if gpu != "none"]
    assert sorted(given) == [f"GPU-{n}" for n in range(4)]
    assert got.count("none") == 4
