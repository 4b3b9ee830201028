"""`platform ssh-config`: the ~/.ssh/config block for SSH into your dev container via the hub.

It asks the hub for a new token that can only reach your own server
(`access:servers!server=<you>/`: it cannot start or stop servers or read anything else), and
prints a Host block whose ProxyCommand carries SSH over the hub's websocket with websocat.
The token that authorizes this request comes from the hub's token page (`/hub/token`) through
the environment (`JUPYTERHUB_API_TOKEN`) or a file, never from the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlsplit

DEFAULT_EXPIRY_DAYS = 90


def ssh_config_block(hub_url: str, user: str, token: str, alias: str) -> str:
    parts = urlsplit(hub_url.rstrip("/"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    socket_url = f"{scheme}://{parts.netloc}{parts.path}/user/{quote(user)}/sshd/"
    return (
        f"Host {alias}\n"
        f"    User scientist\n"
        f"    # sshd's host key lives in your persistent home: it survives respawns.\n"
        f"    HostKeyAlias {alias}\n"
        f"    ServerAliveInterval 60\n"
        f"    ProxyCommand websocat --binary -H='Authorization: token {token}' "
        f"asyncstdio: {socket_url}\n"
    )


def request_server_token(hub_url: str, user: str, api_token: str, expires_in: int | None) -> str:
    body: dict[str, object] = {
        "scopes": [f"access:servers!server={user}/"],
        "note": "ssh-config: SSH into the dev container",
    }
    if expires_in:
        body["expires_in"] = expires_in
    if urlsplit(hub_url).scheme not in {"http", "https"}:
        raise ValueError(f"{hub_url}: the hub's URL must start with https:// (or http://)")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        f"{hub_url.rstrip('/')}/hub/api/users/{quote(user)}/tokens",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"token {api_token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - scheme checked above
        return json.load(response)["token"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="platform", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ssh = commands.add_parser("ssh-config", help="print the ~/.ssh/config block for your container")
    ssh.add_argument("--hub", required=True, help="the hub's URL, e.g. https://hub.example.org")
    ssh.add_argument("--user", required=True, help="your GitLab username")
    ssh.add_argument("--alias", help="the Host name to use with ssh (default: dev-<user>)")
    ssh.add_argument(
        "--token-file", type=Path, help="file with a hub API token (default: $JUPYTERHUB_API_TOKEN)"
    )
    ssh.add_argument(
        "--expires-days",
        type=int,
        default=DEFAULT_EXPIRY_DAYS,
        help=f"the new token's lifetime in days, 0 for none (default {DEFAULT_EXPIRY_DAYS})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.token_file:
        api_token = args.token_file.read_text().strip()
    else:
        api_token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api_token:
        print(
            "platform ssh-config: no hub token: make one at <hub>/hub/token, then "
            "export JUPYTERHUB_API_TOKEN=... or pass --token-file",
            file=sys.stderr,
        )
        return 2
    try:
        token = request_server_token(
            args.hub, args.user, api_token, args.expires_days * 86400 or None
        )
    except ValueError as error:
        print(f"platform ssh-config: {error}", file=sys.stderr)
        return 2
    except urllib.error.HTTPError as error:
        print(
            f"platform ssh-config: the hub refused ({error.code} {error.reason})", file=sys.stderr
        )
        return 1
    except urllib.error.URLError as error:
        print(f"platform ssh-config: cannot reach {args.hub}: {error.reason}", file=sys.stderr)
        return 1
    print(ssh_config_block(args.hub, args.user, token, args.alias or f"dev-{args.user}"), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
