# JupyterLab in the dev container. No token or password here: Jupyter reads the token from the
# JUPYTER_TOKEN environment variable, which the entrypoint requires at start.
c = get_config()  # noqa: F821 - provided by Jupyter when it loads this file

# Inside the container only; the host publishes the port (e.g. on 127.0.0.1 or behind nginx).
c.ServerApp.ip = "0.0.0.0"  # noqa: S104 - the container's own network namespace
c.ServerApp.port = 8888
c.ServerApp.open_browser = False
c.ServerApp.allow_root = False
c.ServerApp.root_dir = "/home/scientist"
c.ServerApp.allow_remote_access = True
