"""Fixtures of the template tests only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.templates.registry import Registry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    """A real registry on loopback, empty."""
    started = Registry.started(tmp_path / "registry")
    yield started
    started.stop()
