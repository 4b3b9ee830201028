"""A dataset's manifest and its id.

The canonical manifest is the JSON array of its files sorted by path, each
`{"path", "sha256", "size"}` with sorted keys, no spaces, UTF-8. The dataset id is the
sha256 of those bytes. The manifest is also stored in the content store under its own
digest, so a pipeline that knows only the id can fetch it and verify it like any file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DIGEST = re.compile(r"^[0-9a-f]{64}$")
MAX_FILES = 100_000
MAX_PATH = 1024
# What the `dataset` template writes beside the files: the record and the manifest.
RESERVED = ("datasets.json", "dataset.json")


class InvalidManifest(ValueError):
    """The manifest breaks a rule; the message names the file and the rule."""


@dataclass(frozen=True, order=True)
class FileEntry:
    path: str
    size: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def check_path(path: str) -> str:
    """A relative POSIX path inside the dataset: what the `dataset` template may write."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise InvalidManifest(f"file path {path!r} must be 1 to {MAX_PATH} characters")
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise InvalidManifest(f"file path {path!r} must be relative, without '.', '..' or '//'")
    if not path.isprintable() or path != path.strip():
        raise InvalidManifest(f"file path {path!r} has control characters or edge spaces")
    if path in RESERVED:
        raise InvalidManifest(f"file path {path!r} is where the `dataset` template writes")
    return path


def entry_of(raw: Any) -> FileEntry:
    """One file of a manifest posted as JSON, checked."""
    if not isinstance(raw, dict) or set(raw) != {"path", "size", "sha256"}:
        raise InvalidManifest('each file must be exactly {"path", "size", "sha256"}')
    path, size, digest = raw["path"], raw["size"], raw["sha256"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"{path!r}: size must be a non-negative integer")
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise InvalidManifest(f"{path!r}: sha256 must be 64 lowercase hex digits")
    return FileEntry(check_path(path), size, digest)


def canonical(files: Iterable[FileEntry]) -> list[FileEntry]:
    """The files sorted by path; a path listed twice is refused."""
    ordered = sorted(files)
    if not ordered:
        raise InvalidManifest("a dataset needs at least one file")
    if len(ordered) > MAX_FILES:
        raise InvalidManifest(f"a dataset holds at most {MAX_FILES} files")
    for before, after in itertools.pairwise(ordered):
        if before.path == after.path:
            raise InvalidManifest(f"file path {before.path!r} is listed twice")
    return ordered


def manifest_bytes(files: Iterable[FileEntry]) -> bytes:
    document = [entry.as_dict() for entry in canonical(files)]
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def dataset_id(files: Iterable[FileEntry]) -> str:
    return hashlib.sha256(manifest_bytes(files)).hexdigest()
