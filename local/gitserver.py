"""A read-only git smart-HTTP server on loopback, for local mode.

gitlab-ci-local fetches a component of another project with `git clone` from the host of the
current project's `origin` remote. In local mode there is no GitLab, so this server plays that
host: it serves bare repositories under `root` (e.g. `root/platform/pipeline-templates.git`)
through `git http-backend`. Pushes are refused (http-backend allows receive-pack only to an
authenticated user, and this server authenticates nobody).

Run: `python -m local.gitserver --root DIR --port PORT`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socketserver
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

# A fixed identity and date make a published commit a function of its content alone.
_FIXED_COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "local mode",
    "GIT_AUTHOR_EMAIL": "local-mode@localhost",
    "GIT_COMMITTER_NAME": "local mode",
    "GIT_COMMITTER_EMAIL": "local-mode@localhost",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}

StartResponse = Callable[[str, list[tuple[str, str]]], object]


def _read_body(environ: dict) -> bytes:
    stream = environ["wsgi.input"]
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(stream.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                stream.readline()
                return b"".join(chunks)
            chunks.append(stream.read(size))
            stream.readline()
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return stream.read(length) if length else b""


def make_app(root: Path) -> Callable[[dict, StartResponse], Iterable[bytes]]:
    """A WSGI app that hands every request to `git http-backend` (CGI) for repos in `root`."""
    git = shutil.which("git") or "git"

    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        cgi_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "REMOTE_ADDR": environ.get("REMOTE_ADDR", "127.0.0.1"),
            "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", ""),
            "HTTP_CONTENT_ENCODING": environ.get("HTTP_CONTENT_ENCODING", ""),
        }
        body = _read_body(environ)
        cgi_env["CONTENT_LENGTH"] = str(len(body))
        done = subprocess.run(
            [git, "http-backend"], input=body, env=cgi_env, capture_output=True, check=False
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status = "200 OK"
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name:
                headers.append((name.strip(), value.strip()))
        if done.returncode != 0 and not done.stdout:
            status = "500 Internal Server Error"
            payload = done.stderr
            headers = [("Content-Type", "text/plain")]
        start_response(status, headers)
        return [payload]

    return app


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


def publish(source: Path, bare_repo: Path, tags: Iterable[str] = ()) -> str:
    """Make `bare_repo` hold exactly the files of directory `source`, as one commit on `main`.

    The commit has a fixed author and date, so the same content always gives the same SHA; each
    of `tags` points at it. Returns the commit SHA.
    """
    env = {**os.environ, **_FIXED_COMMIT_ENV}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "work"
        shutil.copytree(source, work, ignore=shutil.ignore_patterns(".git", ".gitlab-ci-local"))

        def git(*args: str, cwd: Path = work) -> str:
            return subprocess.run(
                ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
            ).stdout.strip()

        git("init", "-q", "-b", "main")
        git("add", "-A")
        git("commit", "-q", "--no-gpg-sign", "-m", f"Publish {source.name}")
        for tag in tags:
            git("tag", "-f", tag)
        sha = git("rev-parse", "HEAD")
        if bare_repo.exists():
            shutil.rmtree(bare_repo)
        bare_repo.parent.mkdir(parents=True, exist_ok=True)
        git("clone", "-q", "--bare", str(work), str(bare_repo), cwd=Path(scratch))
    return sha


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="directory of bare repos")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = make_server(
        "127.0.0.1",
        args.port,
        make_app(args.root.resolve()),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    print(f"serving {args.root} on http://127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
