"""Registering files: content ids, one copy of the bytes, verified uploads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import psycopg
from click.testing import CliRunner

from bridge.auth import add_client
from bridge.cli import main
from bridge.datasets.manifest import FileEntry, dataset_id, manifest_bytes
from local.s3 import LocalS3
from tests.fixtures.datasets import bridge_cli, write_random

MB = 1024 * 1024


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MB):
            digest.update(block)
    return digest.hexdigest()


def test_three_files_register_once_and_again_under_the_same_id(
    datasets_env: dict[str, str], local_s3: LocalS3, bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "run-42"
    big = write_random(folder / "raw" / "frames.bin", 200 * MB)
    (folder / "notes.txt").write_text("ARB-diff, charlie\n")
    (folder / "raw" / "settings.json").write_text('{"gain": 3}\n')
    add = ["datasets", "add", str(folder), "--group", "lab", "--format", "json"]

    first = bridge_cli(datasets_env, *add, "--meta", "experiment=ARB-diff", "--meta", "run=42")
    second = bridge_cli(datasets_env, *add, "--meta", "experiment=ARB-diff", "--meta", "run=42")

    files = [
        {"path": "notes.txt", "size": 18, "sha256": _sha256(folder / "notes.txt")},
        {"path": "raw/frames.bin", "size": 200 * MB, "sha256": _sha256(big)},
        {"path": "raw/settings.json", "size": 12, "sha256": _sha256(folder / "raw/settings.json")},
    ]
    assert first["files"] == files
    assert first["uploaded_bytes"] == 200 * MB + 18 + 12
    assert second == {**first, "uploaded_bytes": 0}
    entries = [FileEntry(**f) for f in files]
    assert first["id"] == dataset_id(entries)
    s3 = local_s3.client()
    stored = s3.list_objects_v2(Bucket=bucket, Prefix="sha256/")["Contents"]
    assert sorted(o["Key"] for o in stored) == sorted(
        [f"sha256/{f['sha256']}" for f in files] + [f"sha256/{first['id']}"]
    )
    big_object = s3.get_object(Bucket=bucket, Key=f"sha256/{files[1]['sha256']}")
    assert big_object["ContentLength"] == 200 * MB
    assert big_object["ETag"].strip('"').endswith("-13"), "200 MB goes up in 16 MiB parts"
    manifest = s3.get_object(Bucket=bucket, Key=f"sha256/{first['id']}")["Body"].read()
    assert manifest == manifest_bytes(entries)
    assert hashlib.sha256(manifest).hexdigest() == first["id"]


def test_a_file_already_stored_by_another_dataset_is_not_sent_again(
    datasets_env: dict[str, str], tmp_path: Path
) -> None:
    shared = write_random(tmp_path / "a" / "shared.bin", 3 * MB)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "shared.bin").write_bytes(shared.read_bytes())
    (tmp_path / "b" / "extra.txt").write_text("x")
    add = ["datasets", "add", "--group", "lab", "--format", "json"]

    first = bridge_cli(datasets_env, *add, str(tmp_path / "a"))
    second = bridge_cli(datasets_env, *add, str(tmp_path / "b"))

    assert first["uploaded_bytes"] == 3 * MB
    assert second["uploaded_bytes"] == 1
    assert first["id"] != second["id"]


def test_files_named_on_the_command_line_keep_their_own_names(
    datasets_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "x.csv").write_text("a\n")
    (tmp_path / "y.csv").write_text("b\n")

    out = bridge_cli(
        datasets_env, "datasets", "add", str(tmp_path / "x.csv"), str(tmp_path / "y.csv"),
        "--group", "lab", "--format", "json",
    )  # fmt: skip

    assert [f["path"] for f in out["files"]] == ["x.csv", "y.csv"]


def test_the_same_name_twice_is_refused_with_one_line(
    datasets_env: dict[str, str], tmp_path: Path
) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "data.csv").write_text(folder)

    result = CliRunner().invoke(
        main,
        ["datasets", "add", str(tmp_path / "a"), str(tmp_path / "b"), "--group", "lab"],
        env=datasets_env,
    )

    assert result.exit_code == 1
    assert result.output.strip() == "Error: file path 'data.csv' is listed twice"


def test_the_same_files_under_another_group_are_refused(
    datasets_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "f.txt").write_text("same bytes")
    bridge_cli(datasets_env, "datasets", "add", str(tmp_path), "--group", "lab", "--format", "json")

    result = CliRunner().invoke(
        main, ["datasets", "add", str(tmp_path), "--group", "other"], env=datasets_env
    )

    assert result.exit_code == 1
    assert "already registered" in result.output
    assert "by group 'lab'" in result.output


def test_metadata_from_a_file_and_flags_keeps_json_types(
    datasets_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f.txt").write_text("1")
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"operator": "charlie", "temperature": 4.5}))

    added = bridge_cli(
        datasets_env, "datasets", "add", str(tmp_path / "data"), "--group", "lab",
        "--meta-file", str(meta), "--meta", "run=7", "--meta", "note=hello world",
        "--format", "json",
    )  # fmt: skip
    shown = bridge_cli(datasets_env, "datasets", "show", added["id"])

    assert shown["metadata"] == {
        "operator": "charlie",
        "temperature": 4.5,
        "run": 7,
        "note": "hello world",
    }
    assert shown["group"] == "lab"
    assert shown["files"] == added["files"]


def test_the_api_registers_a_manifest_of_stored_files_only(
    app, datasets_env: dict[str, str], local_s3: LocalS3, bucket: str, db_url: str
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        lab = {"Authorization": f"Bearer {add_client(conn, 'lab')}"}
    content = b"measured\n"
    digest = hashlib.sha256(content).hexdigest()
    body = {"group": "lab", "metadata": {"kind": "scan"},
            "files": [{"path": "scan.csv", "size": len(content), "sha256": digest}]}  # fmt: skip

    missing = app.post("/api/v1/datasets", json=body, headers=lab)
    local_s3.client().put_object(Bucket=bucket, Key=f"sha256/{digest}", Body=content)
    created = app.post("/api/v1/datasets", json=body, headers=lab)
    again = app.post("/api/v1/datasets", json=body, headers=lab)
    elsewhere = app.post("/api/v1/datasets", json={**body, "group": "other"}, headers=lab)

    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "files_not_stored"
    assert "scan.csv" in missing.json()["error"]["message"]
    assert created.status_code == 201
    assert created.json()["created"] is True
    assert created.json()["created_by"] == "client:lab"
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["id"] == created.json()["id"]
    assert elsewhere.status_code == 403
    stored = local_s3.client().get_object(Bucket=bucket, Key=f"sha256/{created.json()['id']}")
    assert hashlib.sha256(stored["Body"].read()).hexdigest() == created.json()["id"]
