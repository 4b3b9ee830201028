"""Datasets (issue 12): registering 1 GB against a plain upload, a metadata query and the
datasets page over 100,000 datasets.

Upload: 100 files of 10 MiB of random bytes to moto's S3 server on loopback, once with a
plain `upload_file` of each file (boto3's transfer manager: multipart, 10 threads) and once
with `bridge.datasets.upload` (hash, skip what is stored, per-part SHA-256 and MD5, verify
what the store reports), both through the same boto3 client into empty buckets.

Query and page: 100,000 datasets with varied metadata in a durable Postgres; the query is
the issue's example ("charlie's ARB-diff runs since May"); the baseline is the newest page
without conditions. Median of repeated runs.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient

from bridge.api.app import create_app
from bridge.auth import ADMIN
from bridge.datasets import service
from bridge.datasets.query import parse_all
from bridge.datasets.store import ContentStore
from bridge.datasets.upload import upload
from bridge.settings import Settings
from bridge.storage.migrate import migrate
from local.s3 import LocalS3
from tests.bench.bench_bridge_ledger import RATES, durable_postgres, new_database
from tests.bench.table import Row

FILES, FILE_SIZE = 100, 10 << 20
DATASETS = 100_000
QUERY = ["operator=charlie", "experiment=ARB-diff", "date>=2026-05-01"]
RATIO_TARGET = 0.8
QUERY_TARGET_MS = 50
ADMIN_TOKEN = "bench-admin-token"

# 100,000 datasets: 8 operators, 5 experiments, a date over two years, a number, a tag list.
_FILL = """
INSERT INTO datasets (id, group_path, client, metadata, files, file_count, total_bytes,
                      created_by, created_at)
SELECT encode(sha256(('dataset ' || n)::bytea), 'hex'),
       (ARRAY['lab', 'lab/imaging', 'other'])[1 + n %% 3],
       CASE WHEN n %% 3 = 2 THEN 'other' ELSE 'lab' END,
       jsonb_build_object(
         'operator', (ARRAY['charlie', 'dana', 'eve', 'frank', 'grace', 'heidi', 'ivan',
                            'judy'])[1 + n %% 8],
         'experiment', (ARRAY['ARB-diff', 'ARB-ctrl', 'baseline', 'pilot', 'scan'])[1 + n %% 5],
         'date', to_char(date '2025-01-01' + (n %% 730), 'YYYY-MM-DD'),
         'temperature', (n %% 400) / 10.0,
         'tags', jsonb_build_array('batch-' || (n %% 50))),
       jsonb_build_array(jsonb_build_object('path', 'f.csv', 'size', n,
         'sha256', encode(sha256(('file ' || n)::bytea), 'hex'))),
       1, n, 'bench', now() - make_interval(secs => n)
FROM generate_series(1, %(count)s) AS n
"""


def _median_ms(action, repeat: int = 15) -> float:
    action()  # warm: plans, caches
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def upload_rows(workdir: Path) -> list[Row]:
    folder = workdir / "files"
    folder.mkdir()
    for number in range(FILES):
        (folder / f"part-{number:03d}.bin").write_bytes(os.urandom(FILE_SIZE))
    total = FILES * FILE_SIZE
    s3 = LocalS3(workdir / "s3")
    s3.start()
    try:
        for bucket in ("plain", "registered"):
            s3.ensure_bucket(bucket)
        store = ContentStore(_client(s3), "registered")
        started = time.perf_counter()
        for path in sorted(folder.iterdir()):
            store.client.upload_file(str(path), "plain", path.name)
        plain = total / (time.perf_counter() - started)
        started = time.perf_counter()
        uploaded = upload(store, [folder], bar=lambda _label, _total: _silent())
        registered = total / (time.perf_counter() - started)
    finally:
        s3.stop()
    if uploaded.uploaded_bytes != total:
        raise RuntimeError(f"uploaded {uploaded.uploaded_bytes} of {total} bytes")
    ratio = registered / plain
    return [
        Row(
            benchmark=f"datasets add: {FILES} files, {total / 1e9:.2f} GB to S3 (moto, loopback)",
            measured=f"{registered / 1e6:,.0f} MB/s (hash, upload, verify)",
            baseline=f"{plain / 1e6:,.0f} MB/s plain upload_file, same boto3 client",
            comparison=f"ratio {ratio:.2f}",
            target=f">= {RATIO_TARGET} of plain",
            met=ratio >= RATIO_TARGET,
        )
    ]


def _client(s3: LocalS3):
    """A client configured as ContentStore.from_env configures it, for this endpoint."""
    import boto3
    from botocore.config import Config

    from bridge.datasets.store import PARALLEL_PARTS

    env = s3.client_env()
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
        config=Config(max_pool_connections=PARALLEL_PARTS * 2, retries={"mode": "standard"}),
    )


class _silent:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: object) -> None:
        return None


def query_rows(workdir: Path) -> list[Row]:
    rates_file = workdir / "rates.yml"
    rates_file.write_text(RATES)
    with durable_postgres() as server:
        url = new_database(server, "datasets")
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
            conn.execute(_FILL, {"count": DATASETS})
            conn.execute("ANALYZE datasets")
            filters = service.Filters(conditions=tuple(parse_all(QUERY)))
            found = service.list_datasets(conn, ADMIN, filters, limit=100)
            query_ms = _median_ms(lambda: service.list_datasets(conn, ADMIN, filters, limit=100))
            newest_ms = _median_ms(
                lambda: service.list_datasets(conn, ADMIN, service.Filters(), limit=100)
            )
        settings = Settings.from_env(
            {
                "BRIDGE_DATABASE_URL": url,
                "BRIDGE_WEBHOOK_TOKEN": "bench",
                "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
                "BRIDGE_RATES_FILE": str(rates_file),
                "BRIDGE_GITLAB_URL": "https://gitlab.example.com",
            }
        )
        with TestClient(create_app(settings), base_url="https://testserver") as client:
            client.post("/ui/login", data={"token": ADMIN_TOKEN})
            page = client.get("/ui/datasets")
            if page.status_code != 200 or page.text.count('class="dataset"') != 100:
                raise RuntimeError(f"the datasets page did not list 100 rows: {page.status_code}")
            page_ms = _median_ms(lambda: client.get("/ui/datasets"))
            api_ms = _median_ms(
                lambda: client.get(
                    "/api/v1/datasets", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                )
            )
    return [
        Row(
            benchmark=f"metadata query over {DATASETS:,} datasets ({' AND '.join(QUERY)})",
            measured=f"{query_ms:.1f} ms median, first page of {len(found)}",
            baseline=f"{newest_ms:.1f} ms newest page without conditions",
            comparison=f"ratio {query_ms / newest_ms:.1f}",
            target=f"< {QUERY_TARGET_MS} ms",
            met=query_ms < QUERY_TARGET_MS,
        ),
        Row(
            benchmark=f"datasets page over {DATASETS:,} datasets (100 rows, HTML)",
            measured=f"{page_ms:.0f} ms median",
            baseline=f"{api_ms:.0f} ms GET /api/v1/datasets (same 100, JSON)",
            comparison=f"ratio {page_ms / api_ms:.2f}",
            target="-",
            met=None,
        ),
    ]


def run() -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-datasets-"))
    try:
        return query_rows(workdir) + upload_rows(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
