"""A real registry on loopback: Debian's `docker-registry` (distribution 2.8), with the garbage
collection GitLab's registry cleanup performs (untagged manifests are deleted)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from local.ports import free_port
from local.service import Daemon


@dataclass
class Registry:
    root: Path
    port: int

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.root / "config.yml"

    def daemon(self) -> Daemon:
        return Daemon("registry", ["docker-registry", "serve", str(self.config)], self.root)

    def start(self) -> None:
        self.config.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n  secret: loopback-test-only\n"
        )
        daemon = self.daemon()
        daemon.start()
        daemon.wait_for_http(f"http://{self.host}/v2/", 30)

    def stop(self) -> None:
        self.daemon().stop()

    def garbage_collect(self) -> str:
        """Delete every manifest no tag points at, and the blobs only they used (the registry
        is stopped meanwhile, as distribution requires)."""
        self.stop()
        done = subprocess.run(
            ["docker-registry", "garbage-collect", "--delete-untagged", str(self.config)],
            capture_output=True,
            text=True,
            check=True,
        )
        self.start()
        return done.stdout

    @classmethod
    def started(cls, root: Path) -> Registry:
        registry = cls(root, free_port())
        root.mkdir(parents=True)
        registry.start()
        return registry

    def pullable(self, reference: str) -> bool:
        """Whether `repository@digest` (or `:tag`) can be fetched, manifest and config."""
        done = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{reference}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.returncode == 0
