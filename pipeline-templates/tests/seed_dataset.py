"""Put a file into a content-addressed S3 store (`<store>/<sha256>`), as the platform's dataset
publishing does, so that the `dataset` component test has something to fetch."""

import hashlib
import os
import sys

import boto3


def main(path: str, store: str) -> None:
    with open(path, "rb") as f:
        body = f.read()
    digest = hashlib.sha256(body).hexdigest()
    bucket, _, prefix = store.removeprefix("s3://").partition("/")
    key = f"{prefix.strip('/')}/{digest}" if prefix.strip("/") else digest
    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    print(f"s3://{bucket}/{key} ({len(body)} bytes)")


if __name__ == "__main__":
    main(*sys.argv[1:])
