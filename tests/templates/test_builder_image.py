"""The builder image `build-environment` defaults to is the instance CI/CD variable
`PLATFORM_BUILDKIT_IMAGE`, an image by digest: the deploy sets it from the image lock, through
the site registry mirror the runners allow (tests/provisioning/test_template_image_variables.py)."""

from __future__ import annotations

import re

import yaml

from tests.fixtures.local_platform import TEMPLATES


def allows(pattern: str, image: str) -> bool:
    """GitLab Runner's `allowed_images` glob (doublestar): `**` crosses `/`, `*` does not."""
    parts = re.split(r"(\*\*|\*|\?)", pattern)
    wild = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    regex = "".join(wild.get(part, re.escape(part)) for part in parts)
    return re.fullmatch(regex, image) is not None


def test_the_glob_is_the_runners() -> None:
    assert allows("registry.ml.example.org/**", "registry.ml.example.org/a/b@sha256:00")
    assert not allows("registry.ml.example.org/**", "docker.io/moby/buildkit:v0.23.2-rootless")
    assert not allows("registry.ml.example.org/*", "registry.ml.example.org/a/b")


def test_the_default_builder_is_the_instance_variable_and_only_a_digest_is_accepted() -> None:
    header = next(
        yaml.safe_load_all((TEMPLATES / "templates" / "build-environment.yml").read_text())
    )
    builder = header["spec"]["inputs"]["builder_image"]
    assert builder["default"] == "$PLATFORM_BUILDKIT_IMAGE"
    assert not re.search(builder["regex"], "moby/buildkit:v0.23.2-rootless"), "no tag"
    assert re.search(builder["regex"], "registry.lab:5000/moby/buildkit@sha256:" + "ab" * 32)
