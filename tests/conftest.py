"""Shared pytest configuration: each fixture module under tests/fixtures is a plugin."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.bridge",
    "tests.fixtures.gitlab",
    "tests.fixtures.local_platform",
    "tests.fixtures.registry",
    "tests.fixtures.provisioning",
    "tests.fixtures.docker",
    "tests.fixtures.datasets",
    "tests.fixtures.identity",
    "tests.fixtures.dev_hub",
]
