"""The example analysis on a registered dataset id, run by gitlab-ci-local: the `dataset`
template fetches the manifest by the id, verifies it and every file, and the run's
provenance in the bridge names the dataset id."""

from __future__ import annotations

import subprocess
import sys

from tests.fixtures.datasets import bridge_cli
from tests.fixtures.local_platform import DATASET_BUCKET, TEST_CLIENT, example_files


def test_the_example_runs_on_a_registered_dataset_id(ci_project, local_bridge, local_s3, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(
        [sys.executable, str(example_files() / "prepare_data.py"), str(data / "breast_cancer.csv")],
        check=True, capture_output=True,
    )  # fmt: skip
    env = {
        **local_bridge.server.env(),
        **local_s3.client_env(),
        "BRIDGE_DATASETS_BUCKET": DATASET_BUCKET,
    }
    added = bridge_cli(
        env, "datasets", "add", str(data), "--group", TEST_CLIENT, "--meta", "source=sklearn",
        "--format", "json",
    )  # fmt: skip
    dataset_id, (csv_file,) = added["id"], added["files"]
    project = ci_project(source=example_files())
    # What `bridge analyses submit` hands the pipeline.
    project.extra_variables["PLATFORM_DATASET_ID"] = dataset_id

    run = project.run()

    assert [r.status for r in run.results] == ["success"] * 3, run.results[0].output[-3000:]
    fetch = run.job("dataset")
    assert f"verified the manifest of dataset {dataset_id} (1 files)" in fetch.output
    assert (
        f"verified breast_cancer.csv ({csv_file['size']} bytes, sha256 {csv_file['sha256']})"
        in (fetch.output)
    )
    status, job = project.bridge.admin_get(f"/api/v1/jobs/{run.job('train').job_id}")
    assert status == 200, job
    assert job["provenance"]["datasets"] == [
        {
            "name": "dataset.json",
            "uri": f"s3://{DATASET_BUCKET}/sha256/{dataset_id}",
            "sha256": dataset_id,
            "size": len(
                local_s3.client()
                .get_object(Bucket=DATASET_BUCKET, Key=f"sha256/{dataset_id}")["Body"]
                .read()
            ),
        },
        {
            "name": "breast_cancer.csv",
            "uri": f"s3://{DATASET_BUCKET}/sha256/{csv_file['sha256']}",
            "sha256": csv_file["sha256"],
            "size": csv_file["size"],
        },
    ]
