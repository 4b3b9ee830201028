"""The builder image `build-environment` defaults to can run on the platform's own runners: it
comes from the platform registry (GitLab's registry, `$CI_REGISTRY`) by digest, and every
runner of a rendered deploy allows it (`allowed_images` in config.toml)."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.fixtures.local_platform import TEMPLATES

# Where the deploy mirrors the locked builder (pipeline-templates/README.md, build-environment).
MIRROR_PATH = "platform/mirror/moby/buildkit"


def _allows(pattern: str, image: str) -> bool:
    """GitLab Runner's `allowed_images` glob (doublestar): `**` crosses `/`, `*` does not."""
    parts = re.split(r"(\*\*|\*|\?)", pattern)
    wild = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    regex = "".join(wild.get(part, re.escape(part)) for part in parts)
    return re.fullmatch(regex, image) is not None


def test_the_glob_is_the_runners() -> None:
    assert _allows("registry.ml.example.org/**", "registry.ml.example.org/a/b@sha256:00")
    assert not _allows("registry.ml.example.org/**", "docker.io/moby/buildkit:v0.23.2-rootless")
    assert not _allows("registry.ml.example.org/*", "registry.ml.example.org/a/b")


def test_the_default_builder_is_from_the_platform_registry_by_digest() -> None:
    header = next(
        yaml.safe_load_all((TEMPLATES / "templates" / "build-environment.yml").read_text())
    )
    builder = header["spec"]["inputs"]["builder_image"]
    assert builder["default"] == "$PLATFORM_BUILDKIT_IMAGE"
    assert not re.search(builder["regex"], "moby/buildkit:v0.23.2-rootless"), "no tag"
    assert re.search(builder["regex"], f"registry.x/{MIRROR_PATH}@sha256:" + "0" * 64)


def test_every_rendered_runner_allows_the_mirrored_builder(example_render) -> None:
    gitlab = next(example_render.dest.glob("*/**/gitlab/omnibus_config.rb")).read_text()
    registry = re.search(r"^registry_external_url 'https://([^']+)'", gitlab, re.M).group(1)
    builder = f"{registry}/{MIRROR_PATH}@sha256:" + "0" * 64  # the shape; the lock has the digest
    configs = list(example_render.dest.glob("*/**/gitlab-runner/config.toml"))
    assert configs
    for config in configs:
        runners = tomllib.loads(config.read_text())["runners"]
        assert runners
        for runner in runners:
            assert any(_allows(p, builder) for p in runner["docker"]["allowed_images"]), runner
            assert runner["docker"]["privileged"] is False
