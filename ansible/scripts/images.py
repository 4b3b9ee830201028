#!/usr/bin/env python3
"""Container images of the platform: lock their digests, mirror them, print pull references.

ansible/versions.yml names every third-party image by repository and tag (`platform_images`);
the digests live in ansible/images.lock.yml, which only `lock` writes. Everything that pulls
an image (the deploy, Dockerfile build arguments, pipeline templates) asks `ref` (or the
Ansible lookup `platform_image`, which shares this module) for `repository@sha256:...`.

  images.py lock [--from-registry HOST:PORT] [--lock FILE] [--only NAME,...]
      Read each tag's digest from the registry API (skopeo) and write the lock. The digest is
      the one the registry serves for the tag: for a multi-architecture image the digest of
      its index (manifest list), so every architecture pulls the same pinned set.
  images.py mirror --to HOST:PORT [--from-registry HOST:PORT] [--lock FILE]
      Copy every locked image by digest, all architectures, digests preserved, into a site
      registry as <HOST:PORT>/<repository path>:<tag>, and check the digests there.
  images.py ref NAME [--mirror HOST:PORT] [--lock FILE]
      Print the pull reference of one image: `<repository>@sha256:...`, or with a mirror
      `<mirror>/<repository path>@sha256:...` (`nginx` -> `<mirror>/library/nginx@...`).
      Exits 1 with one line naming the image and the command to run when it has no digest.
      This output is a stable interface (Makefile, environments/*/Dockerfile build args).

Registries on a loopback address are spoken to over plain HTTP, as Docker does; `--insecure`
does the same for another registry (a site mirror without TLS).
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

ANSIBLE_DIR = Path(__file__).resolve().parent.parent
VERSIONS = ANSIBLE_DIR / "versions.yml"
LOCK = ANSIBLE_DIR / "images.lock.yml"
DOCKER_HUB = "docker.io"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
LOCK_COMMAND = "make images-lock"

LOCK_HEADER = """\
---
# Digests of the images named in ansible/versions.yml, written only by `make images-lock`
# (ansible/scripts/images.py lock); never edit it by hand. An entry counts only while its
# `reference` equals the image's repository:tag in versions.yml.
"""
UNRESOLVED_NOTE = """\
# UNRESOLVED: no digest has been read from a registry yet for:
# {missing}.
# A deploy refuses to start until the images it pulls are locked: run `make images-lock` on a
# controller with registry access, then commit this file.
"""


class ImageError(Exception):
    """A one-line, user-facing error."""


@dataclass(frozen=True)
class Image:
    """One `repository:tag` of versions.yml, split the way registries address it."""

    name: str
    reference: str  # as written in versions.yml, e.g. nginx:1.28.1-bookworm
    repository: str  # as written, e.g. nginx or gitlab/gitlab-ce
    tag: str
    registry: str  # docker.io unless the repository names a registry host
    path: str  # repository path inside the registry, e.g. library/nginx

    @classmethod
    def parse(cls, name: str, reference: str) -> Image:
        if "@" in reference:
            raise ImageError(
                f"image {name!r} in versions.yml carries a digest ({reference}): name it by "
                f"repository:tag only, digests belong in ansible/images.lock.yml"
            )
        repository, sep, tag = reference.rpartition(":")
        if not sep or not repository or "/" in tag or not tag:
            raise ImageError(
                f"image {name!r} in versions.yml is not repository:tag ({reference!r})"
            )
        first, _, rest = repository.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, rest
        else:
            registry, path = DOCKER_HUB, repository
            if "/" not in path:
                path = f"library/{path}"
        return cls(name, reference, repository, tag, registry, path)

    def source(self, from_registry: str | None) -> str:
        return f"{from_registry or self.registry}/{self.path}"


def load_images(versions: Path = VERSIONS) -> dict[str, Image]:
    data = yaml.safe_load(versions.read_text(encoding="utf-8")) or {}
    images = data.get("platform_images") or {}
    return {name: Image.parse(name, str(ref)) for name, ref in images.items()}


def read_lock(path: Path) -> dict[str, dict[str, str]]:
    """The lock's entries; a missing or empty file is an empty lock."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return {}
    entries = data.get("images") or {}
    if not isinstance(entries, dict):
        raise ImageError(f"{path}: `images` must be a mapping of name to reference and digest")
    return entries


def write_lock(path: Path, entries: dict[str, dict[str, str]], images: dict[str, Image]) -> None:
    missing = [name for name, image in images.items() if locked_digest(image, entries) is None]
    text = LOCK_HEADER + (UNRESOLVED_NOTE.format(missing=", ".join(missing)) if missing else "")
    text += yaml.safe_dump({"images": dict(sorted(entries.items()))}, sort_keys=False, width=200)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def locked_digest(image: Image, entries: dict[str, dict[str, str]]) -> str | None:
    entry = entries.get(image.name) or {}
    digest = str(entry.get("digest") or "")
    if entry.get("reference") != image.reference or not DIGEST.match(digest):
        return None
    return digest


def unlocked_message(names: str | list[str], lock: Path) -> str:
    names = [names] if isinstance(names, str) else names
    quoted = ", ".join(repr(n) for n in names)
    subject = f"image {quoted} has" if len(names) == 1 else f"images {quoted} have"
    command = f"run '{LOCK_COMMAND}' on a controller with registry access"
    return f"{subject} no locked digest in {lock}: {command}"


def pull_reference(image: Image, digest: str, mirror: str | None = None) -> str:
    if mirror:
        return f"{mirror.rstrip('/')}/{image.path}@{digest}"
    return f"{image.repository}@{digest}"


def resolve_ref(
    name: str,
    images: dict[str, Image],
    entries: dict[str, dict[str, str]],
    lock: Path,
    mirror: str | None,
) -> str:
    if name not in images:
        raise ImageError(f"no image {name!r} in versions.yml (known: {', '.join(sorted(images))})")
    digest = locked_digest(images[name], entries)
    if digest is None:
        raise ImageError(unlocked_message(name, lock))
    return pull_reference(images[name], digest, mirror)


# ---- Registry access (skopeo) ------------------------------------------------------------


def is_loopback(registry: str) -> bool:
    host = registry[1 : registry.index("]")] if registry.startswith("[") else registry.split(":")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_verify(registry: str, insecure: bool) -> str:
    return "false" if insecure or is_loopback(registry) else "true"


def skopeo(*args: str) -> bytes:
    try:
        done = subprocess.run(  # noqa: S603 - argv built here from versions.yml and the CLI's options
            ["skopeo", *args],  # noqa: S607 - skopeo from PATH (apt package)
            capture_output=True,
            check=False,
            timeout=1800,
        )
    except FileNotFoundError as exc:
        raise ImageError("skopeo is not installed: run 'make setup' (apt package skopeo)") from exc
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise ImageError(f"skopeo {args[0]} {args[-1]}: {detail[-1] if detail else 'failed'}")
    return done.stdout


def registry_digest(location: str, insecure: bool) -> str:
    """Digest of the manifest the registry serves for `registry/path:tag` or `@digest`: the
    sha256 of its raw bytes (for a multi-architecture image, the index)."""
    registry = location.split("/", 1)[0]
    raw = skopeo(
        "inspect", "--raw", f"--tls-verify={tls_verify(registry, insecure)}", f"docker://{location}"
    )
    return "sha256:" + hashlib.sha256(raw).hexdigest()


# ---- Commands ----------------------------------------------------------------------------


def cmd_lock(args: argparse.Namespace) -> int:
    images = load_images(args.versions)
    wanted = [n.strip() for n in args.only.split(",")] if args.only else list(images)
    unknown = [n for n in wanted if n not in images]
    if unknown:
        raise ImageError(f"no image {unknown[0]!r} in versions.yml")
    entries = {n: e for n, e in read_lock(args.lock).items() if n in images and n not in wanted}
    for name in wanted:
        image = images[name]
        source = image.source(args.from_registry)
        digest = registry_digest(f"{source}:{image.tag}", args.insecure)
        entries[name] = {
            "reference": image.reference,
            "digest": digest,
            "resolved_from": f"{source}:{image.tag}",
        }
        print(f"{name}: {image.reference} -> {digest} (from {source})")
    write_lock(args.lock, entries, images)
    print(f"wrote {args.lock}: {len(entries)} of {len(images)} images locked")
    return 0


def cmd_mirror(args: argparse.Namespace) -> int:
    images = load_images(args.versions)
    entries = read_lock(args.lock)
    for name, image in images.items():
        digest = locked_digest(image, entries)
        if digest is None:
            raise ImageError(unlocked_message(name, args.lock))
        source = f"{image.source(args.from_registry)}@{digest}"
        target = f"{args.to}/{image.path}:{image.tag}"
        skopeo(
            "copy",
            "--all",
            "--preserve-digests",
            "--retry-times=3",
            f"--src-tls-verify={tls_verify(source.split('/', 1)[0], args.insecure)}",
            f"--dest-tls-verify={tls_verify(args.to, args.insecure)}",
            f"docker://{source}",
            f"docker://{target}",
        )
        copied = registry_digest(f"{args.to}/{image.path}@{digest}", args.insecure)
        if copied != digest:
            raise ImageError(f"image {name!r}: {args.to} serves {copied}, the lock says {digest}")
        print(f"{name}: {pull_reference(image, digest, args.to)}")
    print(f"mirrored {len(images)} images into {args.to}")
    return 0


def cmd_ref(args: argparse.Namespace) -> int:
    print(
        resolve_ref(
            args.name, load_images(args.versions), read_lock(args.lock), args.lock, args.mirror
        )
    )
    return 0


def registry_address(value: str) -> str:
    if not re.match(r"^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:]+\](:\d{1,5})?$", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST or HOST:PORT")
    return value


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--versions",
        type=Path,
        default=VERSIONS,
        help="image names and tags (default: %(default)s)",
    )
    common.add_argument("--lock", type=Path, default=LOCK, help="lock file (default: %(default)s)")
    common.add_argument(
        "--insecure",
        action="store_true",
        help="plain HTTP, no TLS check, for non-loopback registries",
    )
    top = argparse.ArgumentParser(
        prog="images.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = top.add_subparsers(dest="command", required=True)
    lock = sub.add_parser(
        "lock", parents=[common], help="resolve every tag's digest and write the lock"
    )
    lock.add_argument(
        "--from-registry",
        type=registry_address,
        help="resolve from this registry instead of upstream",
    )
    lock.add_argument(
        "--only", help="comma-separated image names to (re)resolve; the others are kept"
    )
    lock.set_defaults(run=cmd_lock)
    mirror = sub.add_parser(
        "mirror", parents=[common], help="copy every locked image by digest into a site registry"
    )
    mirror.add_argument(
        "--to", required=True, type=registry_address, help="site registry HOST:PORT"
    )
    mirror.add_argument(
        "--from-registry", type=registry_address, help="copy from this registry instead of upstream"
    )
    mirror.set_defaults(run=cmd_mirror)
    ref = sub.add_parser(
        "ref", parents=[common], help="print the pull reference repository@sha256:... of one image"
    )
    ref.add_argument("name", help="image name in versions.yml (platform_images)")
    ref.add_argument("--mirror", type=registry_address, help="site registry HOST:PORT to pull from")
    ref.set_defaults(run=cmd_ref)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except ImageError as exc:
        print(exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
