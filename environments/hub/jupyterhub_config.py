# JupyterHub of the platform: GitLab login, one dev container per user. Every setting comes from
# the environment (see platform_hub/settings.py and README.md), so the same file serves the
# deployed hub, `make demo-dev` and the tests.
from platform_hub.settings import configure

configure(get_config())  # noqa: F821 - provided by JupyterHub when it loads this file
