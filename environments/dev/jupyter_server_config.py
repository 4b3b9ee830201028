# JupyterLab in the dev container. No token or password here: standalone, Jupyter reads the
# token from the JUPYTER_TOKEN environment variable, which the entrypoint requires at start;
# spawned by JupyterHub, the hub authenticates every request and gives the address to listen on.
import os

c = get_config()  # noqa: F821 - provided by Jupyter when it loads this file

if "JUPYTERHUB_SERVICE_URL" not in os.environ:
    # Inside the container only; the host publishes the port (e.g. on 127.0.0.1 or behind nginx).
    c.ServerApp.ip = "0.0.0.0"  # noqa: S104 - the container's own network namespace
    c.ServerApp.port = 8888
c.ServerApp.open_browser = False
c.ServerApp.allow_root = False
c.ServerApp.root_dir = "/home/scientist"
c.ServerApp.allow_remote_access = True

# SSH into this container through the server's own authentication: a websocket at
# <server>/sshd/ carries the raw TCP stream to sshd on the container's loopback (started by the
# entrypoint; nothing is launched here). Clients connect with websocat as their ProxyCommand.
c.ServerProxy.servers = {
    "sshd": {
        "command": [],
        "port": int(os.environ.get("DEV_SSHD_PORT", "2222")),
        "raw_socket_proxy": True,
        "launcher_entry": {"enabled": False},
    }
}
