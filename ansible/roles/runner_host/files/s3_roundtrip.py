"""Prove the runner cache works from a job container: upload, download, compare, delete.

GitLab Runner silently falls back to a local cache when S3 fails, so the deploy runs this in a
container placed like a job container (same DNS, same CA) and fails loudly instead. Standard
library only (AWS Signature Version 4, path-style URLs), so it runs in any Python image.
Environment: S3_ENDPOINT (https://host[:port]), S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY,
S3_PREFIX, optional S3_REGION (default us-east-1).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(
    method: str,
    url: str,
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
    now: dt.datetime,
) -> dict[str, str]:
    """Headers of an AWS SigV4-signed S3 request (the payload hash is signed too)."""
    parts = urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    headers = {
        "host": parts.netloc,
        "x-amz-content-sha256": payload_hash,
        "x-amz-date": amz_date,
    }
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            parts.path or "/",  # already URI-encoded by the caller; S3 does not encode twice
            parts.query,
            "".join(f"{name}:{headers[name]}\n" for name in sorted(headers)),
            signed,
            payload_hash,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(
        _hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), region), "s3"), "aws4_request"
    )
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return headers


def request(method: str, url: str, body: bytes = b"") -> bytes:
    headers = sign(
        method,
        url,
        body,
        os.environ["S3_ACCESS_KEY"],
        os.environ["S3_SECRET_KEY"],
        os.environ.get("S3_REGION", "us-east-1"),
        dt.datetime.now(dt.UTC),
    )
    del headers["host"]  # urllib sets it from the URL, exactly as signed
    headers["content-type"] = "application/octet-stream"
    # The URL is built from S3_ENDPOINT, an https:// URL of the platform's own configuration.
    req = urllib.request.Request(url, data=body or None, method=method, headers=headers)  # noqa: S310
    with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310 - URL from config
        return response.read()


def roundtrip() -> dict[str, object]:
    endpoint = os.environ["S3_ENDPOINT"].rstrip("/")
    key = f"{os.environ.get('S3_PREFIX', 'deploy-check')}/{secrets.token_hex(8)}.bin"
    url = f"{endpoint}/{os.environ['S3_BUCKET']}/{quote(key, safe='/')}"
    payload = secrets.token_bytes(256 * 1024)
    request("PUT", url, payload)
    try:
        echoed = request("GET", url)
    finally:
        request("DELETE", url)
    if echoed != payload:
        raise RuntimeError(f"downloaded {len(echoed)} bytes that differ from the upload")
    return {"ok": True, "object": key, "bytes": len(payload)}


def main() -> int:
    try:
        result = roundtrip()
    except (urllib.error.URLError, RuntimeError, KeyError, OSError) as exc:
        detail = (
            exc.read().decode(errors="replace")[:500]
            if isinstance(exc, urllib.error.HTTPError)
            else ""
        )
        print(f"S3 cache check FAILED: {exc} {detail}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
