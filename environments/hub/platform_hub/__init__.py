"""The platform's JupyterHub: one dev container per GitLab user, and SSH into it over the hub."""
