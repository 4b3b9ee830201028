"""DockerSpawner for the platform's dev containers.

Per spawn it gives the container what the dev image's entrypoint asks for: the user's UID/GID
(`uid_base` + GitLab user id, from the login's userinfo `sub`: stable, unique, never reused),
the user's SSH public keys fetched from GitLab's `/<username>.keys` (so a key added or removed
in GitLab counts at the next spawn), sshd's port, and, with the `gpu` profile, one GPU from
the platform's allocation as a Docker device request.

`loopback` runs each container on the host's network with the single-user server and sshd bound
to free ports on 127.0.0.1 (local mode and tests, which may not create private-range networks);
in production containers share one user-defined network with the hub and publish nothing.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import quote

from dockerspawner import DockerSpawner
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Bool, Integer, List, Unicode, default

from platform_hub.gpus import GpuPool

GPU_PROFILE = "gpu"


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DevSpawner(DockerSpawner):
    gitlab_url = Unicode(help="GitLab's base URL, for /<username>.keys").tag(config=True)
    uid_base = Integer(200000, help="UID = GID = uid_base + GitLab user id").tag(config=True)
    sshd_port = Integer(2222, help="sshd's port inside the container").tag(config=True)
    loopback = Bool(False, help="host network, free ports on 127.0.0.1").tag(config=True)
    gpus = List(Unicode(), help="GPU device ids this host hands out, one per user").tag(config=True)
    gpu_allocation = Unicode(help="JSON file of the GPU allocation").tag(config=True)

    @default("options_form")
    def _options_form_default(self) -> str:
        if not self.gpus:
            return ""
        return (
            '<label for="profile">Environment</label>'
            '<select class="form-control" name="profile" id="profile">'
            '<option value="cpu" selected>CPU only</option>'
            f'<option value="{GPU_PROFILE}">One GPU</option>'
            "</select>"
        )

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, str]:
        profile = formdata.get("profile", ["cpu"])[0]
        if profile not in {"cpu", GPU_PROFILE}:
            raise ValueError(f"unknown profile {profile!r}: choose cpu or {GPU_PROFILE}")
        return {"profile": profile}

    def _pool(self) -> GpuPool:
        return GpuPool(self.gpus, Path(self.gpu_allocation))

    async def _gitlab_user_id(self) -> int:
        auth_state = await self.user.get_auth_state() or {}
        subject = str((auth_state.get("oauth_user") or {}).get("sub", ""))
        if not subject.isdigit():
            raise RuntimeError(
                f"no GitLab user id for {self.user.name}: log out and in again "
                "(the hub needs enable_auth_state and the userinfo 'sub')"
            )
        return int(subject)

    async def _authorized_keys(self) -> str:
        url = f"{self.gitlab_url.rstrip('/')}/{quote(self.user.name)}.keys"
        try:
            response = await AsyncHTTPClient().fetch(url, request_timeout=10)
        except HTTPClientError as error:
            raise RuntimeError(
                f"cannot read {self.user.name}'s SSH keys from {url}: {error}"
            ) from None
        return response.body.decode()

    async def start(self):
        uid = self.uid_base + await self._gitlab_user_id()
        keys = await self._authorized_keys()
        sshd_port = self.sshd_port
        if self.loopback:
            self.network_name = "host"
            self.use_internal_ip = True
            self.ip = "127.0.0.1"
            self.port = _free_loopback_port()
            sshd_port = _free_loopback_port()
        self._dev_environment = {
            "DEV_UID": str(uid),
            "DEV_GID": str(uid),
            "DEV_SSH_AUTHORIZED_KEYS": keys,
            "DEV_SSHD_PORT": str(sshd_port),
        }
        host_config = dict(self.extra_host_config)
        host_config.pop("device_requests", None)
        profile = (self.user_options or {}).get("profile", "cpu")
        if profile not in {"cpu", GPU_PROFILE}:
            raise ValueError(f"unknown profile {profile!r}: choose cpu or {GPU_PROFILE}")
        if profile == GPU_PROFILE:
            if not self.gpus:
                raise ValueError("this hub has no GPUs: start with the cpu profile")
            gpu = self._pool().allocate(self.user.name)
            # The allocated GPU only; Docker refuses the container if the host has no such GPU.
            host_config["device_requests"] = [{"device_ids": [gpu], "capabilities": [["gpu"]]}]
        self.extra_host_config = host_config
        try:
            return await super().start()
        except Exception:
            self._release_gpu()
            raise

    def get_env(self) -> dict[str, str]:
        return {**super().get_env(), **getattr(self, "_dev_environment", {})}

    def _release_gpu(self) -> None:
        if self.gpus:
            self._pool().release(self.user.name)

    async def get_ip_and_port(self) -> tuple[str, int]:
        if self.loopback:
            return "127.0.0.1", self.port
        return await super().get_ip_and_port()

    async def stop(self, now: bool = False) -> None:
        try:
            await super().stop(now=now)
        finally:
            self._release_gpu()
