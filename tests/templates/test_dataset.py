"""The `dataset` template: fetch by sha256 from S3, verify, hand the files to the next job."""

from __future__ import annotations

import hashlib
import json

from tests.fixtures.local_platform import DATASET_BUCKET, IMAGE, include

STORE = f"s3://{DATASET_BUCKET}/sha256"


def _put(project_s3, content: bytes, digest: str | None = None) -> str:
    digest = digest or hashlib.sha256(content).hexdigest()
    project_s3.client().put_object(Bucket=DATASET_BUCKET, Key=f"sha256/{digest}", Body=content)
    return digest


def _project(ci_project, manifest: str):
    return ci_project(
        files={"datasets.sha256": manifest},
        ci={
            "stages": ["data", "use"],
            "include": [include("dataset", image=IMAGE, store=STORE, stage="data")],
            "use": {
                "stage": "use",
                "needs": ["dataset"],
                "script": [
                    "cat data/numbers.csv",
                    "cat data/nested/words.txt",
                    "cp data/datasets.json received.json",
                ],
                "artifacts": {"paths": ["received.json"]},
            },
        },
    )


def test_verified_files_reach_the_next_job(ci_project, local_s3) -> None:
    numbers, words = b"a,b\n1,2\n", b"hello\nworld\n"
    numbers_digest, words_digest = _put(local_s3, numbers), _put(local_s3, words)
    project = _project(
        ci_project, f"{numbers_digest}  numbers.csv\n{words_digest} *nested/words.txt\n"
    )

    run = project.run()

    assert [r.status for r in run.results] == ["success", "success"], run.results[-1].output
    use = run.job("use")
    assert "1,2" in use.output
    assert "world" in use.output
    received = project.dir / ".gitlab-ci-local" / "artifacts" / "use" / "received.json"
    record = json.loads(received.read_text())
    assert record == [
        {
            "name": "numbers.csv",
            "sha256": numbers_digest,
            "size": len(numbers),
            "uri": f"{STORE}/{numbers_digest}",
        },
        {
            "name": "nested/words.txt",
            "sha256": words_digest,
            "size": len(words),
            "uri": f"{STORE}/{words_digest}",
        },
    ]


def test_a_digest_mismatch_fails_the_job_and_names_the_file(ci_project, local_s3) -> None:
    good = _put(local_s3, b"a,b\n1,2\n")
    claimed = hashlib.sha256(b"what the manifest promised").hexdigest()
    _put(local_s3, b"tampered bytes", digest=claimed)
    project = _project(ci_project, f"{good}  numbers.csv\n{claimed}  nested/words.txt\n")

    run = project.run()

    dataset = run.job("dataset")
    assert dataset.status == "failed"
    assert "Digest mismatch" in dataset.output
    assert f"nested/words.txt: expected sha256 {claimed}" in dataset.output
    assert [r.name for r in run.results] == ["dataset"], "the next job must not run"


def test_a_malformed_manifest_line_fails_with_its_line_number(ci_project) -> None:
    project = _project(ci_project, "not-a-digest  numbers.csv\n")

    run = project.run()

    assert run.job("dataset").status == "failed"
    assert "datasets.sha256:1: expected `<sha256>  <file name>`" in run.job("dataset").output


def test_a_file_name_that_escapes_the_output_directory_is_refused(ci_project, local_s3) -> None:
    digest = _put(local_s3, b"x")
    project = _project(ci_project, f"{digest}  ../outside.txt\n")

    run = project.run()

    assert run.job("dataset").status == "failed"
    assert "must be a relative path inside data/" in run.job("dataset").output
