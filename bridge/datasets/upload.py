"""Registering local files: name them, hash them, upload what the store lacks.

Each file is read twice, in a stream of 1 MiB blocks: once to hash it (so that bytes
already stored are never sent again), once to upload it in parts with per-part SHA-256 and
MD5 that the store checks and reports back. Hashing the next file overlaps uploading the
current one, so the extra pass costs little wall time. A file that changes between the two
passes is detected (size and mtime) and refused.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.datasets.manifest import FileEntry, InvalidManifest, canonical, check_path
from bridge.datasets.service import manifest_of
from bridge.datasets.store import ContentStore

BLOCK = 1 << 20


@dataclass(frozen=True)
class Uploaded:
    id: str
    files: list[FileEntry]
    uploaded_bytes: int


def named_files(paths: Iterable[Path]) -> list[tuple[str, Path]]:
    """(name in the dataset, local path): a folder's files by their path inside it, a file
    by its own name. Symlinks are followed; anything else (sockets, ...) is refused."""
    named: list[tuple[str, Path]] = []
    for root in paths:
        if root.is_dir():
            for path in sorted(p for p in root.rglob("*") if not p.is_dir()):
                named.append((check_path(path.relative_to(root).as_posix()), _regular(path)))
        elif root.exists():
            named.append((check_path(root.name), _regular(root)))
        else:
            raise InvalidManifest(f"{root}: no such file or folder")
    return named


def _regular(path: Path) -> Path:
    if not path.is_file():
        raise InvalidManifest(f"{path}: not a regular file")
    return path


def sha256_of(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


Bar = Callable[[str, int], AbstractContextManager[Any]]


def terminal_bar(label: str, total: int) -> AbstractContextManager[Any]:
    """A tqdm bar on a terminal, nothing otherwise (logs and pipes stay clean)."""
    if not sys.stderr.isatty():
        return nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024)


def _hashed(named: list[tuple[str, Path]]) -> Iterator[tuple[str, Path, str, int]]:
    # One thread hashes ahead while the caller uploads: hashlib releases the GIL.
    with ThreadPoolExecutor(1, thread_name_prefix="sha256") as pool:
        futures = [(name, path, pool.submit(sha256_of, path)) for name, path in named]
        for name, path, future in futures:
            digest, size = future.result()
            yield name, path, digest, size


def upload(store: ContentStore, paths: Iterable[Path], bar: Bar = terminal_bar) -> Uploaded:
    named = named_files(paths)
    total = sum(path.stat().st_size for _, path in named)
    entries: list[FileEntry] = []
    uploaded = 0
    sent: set[str] = set()
    with bar("upload", total) as progress:
        advance = progress.update if progress is not None else (lambda _n: None)
        for name, path, digest, size in _hashed(named):
            entries.append(FileEntry(name, size, digest))
            if digest in sent or store.size_of(digest) == size:
                advance(size)
                continue
            store.put_file(path, digest, size, advance)
            sent.add(digest)
            uploaded += size
    entries = canonical(entries)
    identity, manifest = manifest_of(entries)
    if store.size_of(identity) != len(manifest):
        store.put_bytes(identity, manifest)
    return Uploaded(identity, entries, uploaded)
