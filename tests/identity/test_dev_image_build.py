"""The dev image build's progress and errors (local/dev_image.py), on a tiny image: the real
build takes minutes and is cached, so its reporting is checked here with the same code."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from local.dev_image import build_image


def _context(folder: Path, base: str, run: str) -> str:
    (folder / "Dockerfile").write_text(f"FROM {base}\nRUN {run}\n")
    return str(folder)


def test_each_step_is_reported_and_the_image_exists(tmp_path: Path, docker_daemon: Any) -> None:
    tag = f"identity-hub-test/build-probe:{secrets.token_hex(4)}"
    heard: list[str] = []
    try:
        build_image(
            docker_daemon.client, _context(tmp_path, docker_daemon.image, "true"), tag, heard.append
        )
        assert heard == [f"Step 1/2 : FROM {docker_daemon.image}", "Step 2/2 : RUN true"]
        assert docker_daemon.client.images.get(tag).tags == [tag]
    finally:
        docker_daemon.client.images.remove(tag, force=True)


def test_a_failing_step_stops_with_the_dockers_message(tmp_path: Path, docker_daemon: Any) -> None:
    tag = f"identity-hub-test/build-probe:{secrets.token_hex(4)}"
    context = _context(tmp_path, docker_daemon.image, "sh -c 'exit 3'")
    failed = rf"building {re.escape(tag)} failed: .*returned a non-zero code: 3"
    with pytest.raises(RuntimeError, match=failed):
        build_image(docker_daemon.client, context, tag, lambda _line: None)
    assert not docker_daemon.client.images.list(name=tag)
