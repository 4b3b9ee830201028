"""Upload one staged backup run to the backup bucket and check every object landed whole.

    python backup_upload.py /backup/<stamp>

Environment: MINIO_ENDPOINT (host:port, plain HTTP inside the Compose network), BACKUP_BUCKET,
BACKUP_ACCESS_KEY, BACKUP_SECRET_KEY. Objects are stored as <stamp>/<relative path>; large
files go up in multipart uploads. Exits non-zero when a file is missing or has another size
in the bucket afterwards.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from minio import Minio
from minio.error import S3Error

PART_SIZE = 64 * 1024 * 1024


def upload_run(client: Minio, bucket: str, run_dir: Path) -> list[str]:
    """Uploads every file below run_dir; returns the object names, sorted."""
    names = []
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        name = f"{run_dir.name}/{path.relative_to(run_dir).as_posix()}"
        client.fput_object(bucket, name, str(path), part_size=PART_SIZE)
        stat = client.stat_object(bucket, name)
        if stat.size != path.stat().st_size:
            raise RuntimeError(
                f"{name}: {stat.size} bytes in the bucket, {path.stat().st_size} here"
            )
        names.append(name)
    if not names:
        raise RuntimeError(f"{run_dir} holds no file to upload")
    return names


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} RUN_DIR", file=sys.stderr)
        return 2
    client = Minio(
        os.environ["MINIO_ENDPOINT"],
        access_key=os.environ["BACKUP_ACCESS_KEY"],
        secret_key=os.environ["BACKUP_SECRET_KEY"],
        secure=os.environ.get("MINIO_SECURE", "false").lower() == "true",
    )
    try:
        names = upload_run(client, os.environ["BACKUP_BUCKET"], Path(argv[1]))
    except (S3Error, RuntimeError, OSError) as exc:
        print(f"backup upload failed: {exc}", file=sys.stderr)
        return 1
    print(f"uploaded {len(names)} objects to {os.environ['BACKUP_BUCKET']}/{Path(argv[1]).name}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
