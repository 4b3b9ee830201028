"""Identity in local mode and tests: the GitLab stand-in (an OpenID provider on loopback)."""
