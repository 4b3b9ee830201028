"""The content store's upload checks, against moto's S3 server: progress adds up, and a store
that reports other bytes than were sent is refused, for one PUT and for multipart."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.datasets import store as store_module
from bridge.datasets.store import ContentStore, StoreError
from bridge.datasets.upload import upload
from local.s3 import LocalS3
from tests.fixtures.datasets import write_random


class LyingStore:
    """The real S3 client, except that the answers named in `lies` carry a wrong ETag."""

    def __init__(self, client: Any, lies: set[str]) -> None:
        self._client = client
        self._lies = lies

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if name not in self._lies:
            return real

        def lying(**kwargs: Any) -> dict[str, Any]:
            return {**real(**kwargs), "ETag": '"0123456789abcdef0123456789abcdef"'}

        return lying


def test_progress_counts_every_byte_once_stored_or_sent(
    local_s3: LocalS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "PART_SIZE", 5 << 20)  # S3's smallest part
    write_random(tmp_path / "d" / "big.bin", 12 << 20)
    write_random(tmp_path / "d" / "small.bin", 1000)
    advanced: list[int] = []

    @contextmanager
    def bar(label: str, total: int):
        class Bar:
            def update(self, n: int) -> None:
                advanced.append(n)

        assert (label, total) == ("upload", (12 << 20) + 1000)
        yield Bar()

    store = ContentStore(local_s3.client(), bucket)
    first = upload(store, [tmp_path / "d"], bar=bar)
    again = upload(store, [tmp_path / "d"], bar=bar)

    assert first.id == again.id
    assert (first.uploaded_bytes, again.uploaded_bytes) == ((12 << 20) + 1000, 0)
    assert sum(advanced) == 2 * ((12 << 20) + 1000)
    assert sorted(advanced[:4]) == [1000, 2 << 20, 5 << 20, 5 << 20], "three parts and a PUT"


@pytest.mark.parametrize(
    ("size", "lie"), [(1000, "put_object"), (11 << 20, "upload_part"),
                      (11 << 20, "complete_multipart_upload")]
)  # fmt: skip
def test_a_store_reporting_other_bytes_is_refused(
    local_s3: LocalS3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    size: int, lie: str,
) -> None:  # fmt: skip
    monkeypatch.setattr(store_module, "PART_SIZE", 5 << 20)
    write_random(tmp_path / "d" / "data.bin", size)
    store = ContentStore(LyingStore(local_s3.client(), {lie}), bucket)

    with pytest.raises(StoreError, match="not the MD5"):
        upload(store, [tmp_path / "d"], bar=lambda _label, _total: _no_bar())

    listed = local_s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert listed == [], "nothing unproven stays in the store"


@contextmanager
def _no_bar():
    yield None
