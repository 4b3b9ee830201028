"""The content-addressed store: every file once, under `sha256/<digest>` in one S3 bucket.

The S3 connection comes from the variables boto3 reads itself (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...); the bucket from `BRIDGE_DATASETS_BUCKET`.

Uploads stream in parts of `PART_SIZE` bytes (one PUT for a file that fits in one part, a
multipart upload otherwise), several parts in flight at once, so memory stays bounded by
parts, never by files. Every part carries its SHA-256 (`ChecksumSHA256`, which S3 and MinIO
check before they accept it) and its MD5 (`Content-MD5`). What the store answers is then
verified: its `ChecksumSHA256` when it reports one (the object's digest, or for a multipart
object the digest of the parts' digests with a `-N` suffix), else its ETag, which S3,
MinIO and moto compute as the MD5 of the bytes (of the parts' MD5s for multipart). A store
that reports neither is refused rather than trusted.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUCKET_VARIABLE = "BRIDGE_DATASETS_BUCKET"
DEFAULT_BUCKET = "datasets"
PREFIX = "sha256"
PART_SIZE = 16 << 20
PARALLEL_PARTS = 4

Progress = Callable[[int], None]


class StoreError(RuntimeError):
    """The store refused, could not be reached, or reported other bytes than were sent."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class _Part:
    number: int
    etag: str
    md5: bytes
    sha256: bytes
    size: int


def _md5(data: bytes) -> Any:
    # MD5 is what S3 ETags are made of; it checks transport, it is not a content address.
    return hashlib.md5(data, usedforsecurity=False)


class ContentStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @classmethod
    def from_env(cls, bucket: str | None = None) -> ContentStore:
        import boto3  # deferred: only the commands that touch S3 pay for importing it
        from botocore.config import Config

        config = Config(max_pool_connections=PARALLEL_PARTS * 2, retries={"mode": "standard"})
        name = bucket or os.environ.get(BUCKET_VARIABLE) or DEFAULT_BUCKET
        return cls(boto3.client("s3", config=config), name)

    @staticmethod
    def key(digest: str) -> str:
        return f"{PREFIX}/{digest}"

    def uri(self, digest: str) -> str:
        return f"s3://{self.bucket}/{self.key(digest)}"

    def _errors(self) -> tuple[type[BaseException], ...]:
        from botocore.exceptions import BotoCoreError, ClientError

        return (BotoCoreError, ClientError)

    def size_of(self, digest: str) -> int | None:
        """The stored size of DIGEST's object, or None when it is not stored."""
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(digest))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StoreError(f"s3://{self.bucket}: {exc}") from None
        except self._errors() as exc:
            raise StoreError(f"s3://{self.bucket}: {exc}") from None
        return int(head["ContentLength"])

    def put_bytes(self, digest: str, data: bytes) -> None:
        """Store a small object (a manifest) whose digest the caller computed."""
        if hashlib.sha256(data).hexdigest() != digest:
            raise StoreError(f"refusing to store bytes under a digest they do not have: {digest}")
        self._verify_single(self._put(digest, data, hashlib.sha256(data).digest()), data, digest)

    def put_file(self, path: Path, digest: str, size: int, progress: Progress) -> None:
        """Upload PATH (whose sha256 the caller computed) as DIGEST; refuses if it changed."""
        before = path.stat()
        if before.st_size != size:
            raise StoreError(f"{path}: changed since it was hashed (size {before.st_size})")
        try:
            if size <= PART_SIZE:
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() != digest:
                    raise StoreError(f"{path}: changed since it was hashed")
                response = self._put(digest, data, bytes.fromhex(digest))
                self._verify_single(response, data, digest)
                progress(len(data))
            else:
                self._put_multipart(path, digest, progress)
        except self._errors() as exc:
            raise StoreError(f"{path}: upload to {self.uri(digest)} failed: {exc}") from None
        except StoreError:
            # What the store holds under the digest is not proven: never let it count as stored.
            self.client.delete_object(Bucket=self.bucket, Key=self.key(digest))
            raise
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(digest))
            raise StoreError(f"{path}: changed while it was uploaded; register it again")

    def _put(self, digest: str, data: bytes, sha256: bytes) -> dict[str, Any]:
        return self.client.put_object(
            Bucket=self.bucket,
            Key=self.key(digest),
            Body=data,
            ContentMD5=_b64(_md5(data).digest()),
            ChecksumSHA256=_b64(sha256),
        )

    def _verify_single(self, response: dict[str, Any], data: bytes, digest: str) -> None:
        reported = response.get("ChecksumSHA256")
        if reported is not None:
            if reported != _b64(bytes.fromhex(digest)):
                raise StoreError(f"{self.uri(digest)}: the store reports sha256 {reported}")
            return
        self._check_etag(response, _md5(data).hexdigest(), digest)

    def _check_etag(self, response: dict[str, Any], expected: str, digest: str) -> None:
        etag = str(response.get("ETag", "")).strip('"')
        if not etag:
            raise StoreError(f"{self.uri(digest)}: the store reported no checksum and no ETag")
        if etag != expected:
            raise StoreError(
                f"{self.uri(digest)}: the store's ETag {etag} is not the MD5 of the bytes sent "
                f"({expected}); it reports no ChecksumSHA256 to check instead"
            )

    def _put_multipart(self, path: Path, digest: str, progress: Progress) -> None:
        key = self.key(digest)
        upload = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256"
        )
        upload_id = upload["UploadId"]
        try:
            parts = self._upload_parts(path, key, upload_id, progress)
            response = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [
                        {"PartNumber": p.number, "ETag": p.etag, "ChecksumSHA256": _b64(p.sha256)}
                        for p in parts
                    ]
                },
            )
        except BaseException:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise
        suffix = f"-{len(parts)}"
        reported = response.get("ChecksumSHA256")
        if reported is not None:
            composite = _b64(hashlib.sha256(b"".join(p.sha256 for p in parts)).digest())
            if reported.removesuffix(suffix) != composite:
                raise StoreError(f"{self.uri(digest)}: the store reports sha256 {reported}")
            return
        expected = _md5(b"".join(p.md5 for p in parts)).hexdigest() + suffix
        self._check_etag(response, expected, digest)

    def _upload_parts(
        self, path: Path, key: str, upload_id: str, progress: Progress
    ) -> list[_Part]:
        # At most PARALLEL_PARTS parts read and not yet sent: memory stays bounded.
        slots = threading.Semaphore(PARALLEL_PARTS)
        futures: list[Future[_Part]] = []
        with ThreadPoolExecutor(PARALLEL_PARTS, thread_name_prefix="s3-part") as pool:
            for number, data in enumerate(_chunks(path, slots), 1):
                futures.append(pool.submit(self._send_part, key, upload_id, number, data, slots))
                futures[-1].add_done_callback(lambda f: f.exception() or progress(f.result().size))
            return [future.result() for future in futures]

    def _send_part(
        self, key: str, upload_id: str, number: int, data: bytes, slots: threading.Semaphore
    ) -> _Part:
        try:
            md5, sha256 = _md5(data), hashlib.sha256(data)
            response = self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=_b64(md5.digest()),
                ChecksumSHA256=_b64(sha256.digest()),
            )
            reported = response.get("ChecksumSHA256")
            if reported is not None and reported != _b64(sha256.digest()):
                raise StoreError(f"{key} part {number}: the store reports sha256 {reported}")
            etag = str(response.get("ETag", "")).strip('"')
            if reported is None and etag != md5.hexdigest():
                raise StoreError(f"{key} part {number}: ETag {etag} is not the MD5 of the part")
            return _Part(number, response["ETag"], md5.digest(), sha256.digest(), len(data))
        finally:
            slots.release()


def _chunks(path: Path, slots: threading.Semaphore) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while True:
            slots.acquire()
            data = handle.read(PART_SIZE)
            if not data:
                slots.release()
                return
            yield data
