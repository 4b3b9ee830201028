"""Apply the platform's object-store plan: buckets, lifecycle rules, policies and accounts.

Runs in a one-shot container of the service host's Compose project:
    python minio_bootstrap.py /etc/platform/minio/bootstrap.json
with MINIO_ENDPOINT, MINIO_ROOT_USER, MINIO_ROOT_PASSWORD and one MINIO_SECRET_* variable per
account in its environment. Idempotent: prints {"changed": bool, "actions": [...]} on stdout
and exits non-zero, with the reason on stderr, when anything fails, including an account whose
credentials still do not work after the run.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.credentials import StaticProvider
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule
from minio.minioadmin import MinioAdmin

RULE_ID = "platform-expiry"
BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"}

ACTIONS = {
    "readonly": ["s3:GetObject"],
    "readwrite": [
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    ],
    # Backups: write and read back, never delete (expiry is the bucket's lifecycle rule).
    "append": [
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    ],
}


def policy_document(bucket: str, access: str) -> dict[str, Any]:
    """Least privilege: one bucket, only the object actions its access level needs."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetBucketLocation",
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                ],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
            {
                "Effect": "Allow",
                "Action": ACTIONS[access],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
        ],
    }


def _rules(config: LifecycleConfig | None) -> list[tuple[str | None, int | None]]:
    if config is None:
        return []
    return [
        (rule.rule_id, rule.expiration.days if rule.expiration else None) for rule in config.rules
    ]


def ensure_buckets(client: Minio, buckets: list[dict[str, Any]]) -> list[str]:
    """Buckets exist; each has exactly the expiry rule of the plan (or none). Returns actions."""
    actions = []
    for bucket in buckets:
        name, days = bucket["name"], bucket.get("expire_days")
        if not client.bucket_exists(name):
            client.make_bucket(name)
            actions.append(f"bucket {name} created")
        current = _rules(client.get_bucket_lifecycle(name))
        wanted = [(RULE_ID, days)] if days else []
        if current == wanted:
            continue
        if wanted:
            rule = Rule(
                ENABLED,
                rule_filter=Filter(prefix=""),
                rule_id=RULE_ID,
                expiration=Expiration(days=days),
            )
            client.set_bucket_lifecycle(name, LifecycleConfig([rule]))
            actions.append(f"bucket {name}: objects expire after {days} days")
        else:
            client.delete_bucket_lifecycle(name)
            actions.append(f"bucket {name}: lifecycle rules removed")
    return actions


def _credentials_work(endpoint: str, access_key: str, secret_key: str, bucket: str) -> bool:
    probe = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=False)
    try:
        probe.bucket_exists(bucket)
    except S3Error as exc:
        if exc.code in BAD_CREDENTIALS:
            return False
        raise
    return True


def _attached_policies(admin: MinioAdmin, user: str) -> set[str]:
    info = json.loads(admin.user_info(user))
    return {name for name in str(info.get("policyName", "")).split(",") if name}


def _existing_policy(admin: MinioAdmin, name: str) -> dict[str, Any] | None:
    try:
        info = json.loads(admin.policy_info(name))
    except Exception:
        return None
    return info.get("Policy", info)


def ensure_accounts(admin: MinioAdmin, endpoint: str, accounts: list[dict[str, Any]]) -> list[str]:
    actions = []
    for account in accounts:
        user, bucket = account["access_key"], account["bucket"]
        secret = os.environ[account["secret_env"]]
        policy_name = f"platform-{user}"
        document = policy_document(bucket, account["access"])
        if _existing_policy(admin, policy_name) != document:
            admin.policy_add(policy_name, policy=document)
            actions.append(f"policy {policy_name} written")
        if not _credentials_work(endpoint, user, secret, bucket):
            admin.user_add(user, secret)
            actions.append(f"account {user} created or its secret key reset")
        if policy_name not in _attached_policies(admin, user):
            admin.attach_policy([policy_name], user=user)
            actions.append(f"policy {policy_name} attached to {user}")
        if not _credentials_work(endpoint, user, secret, bucket):
            raise RuntimeError(f"account {user} still cannot reach bucket {bucket}")
    return actions


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} PLAN.json", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as plan_file:
        plan = json.load(plan_file)
    endpoint = os.environ["MINIO_ENDPOINT"]
    root = (os.environ["MINIO_ROOT_USER"], os.environ["MINIO_ROOT_PASSWORD"])
    client = Minio(endpoint, access_key=root[0], secret_key=root[1], secure=False)
    admin = MinioAdmin(endpoint=endpoint, credentials=StaticProvider(*root), secure=False)
    try:
        actions = ensure_buckets(client, plan["buckets"])
        actions += ensure_accounts(admin, endpoint, plan["accounts"])
    except (S3Error, RuntimeError, KeyError, OSError) as exc:
        print(f"minio bootstrap failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"changed": bool(actions), "actions": actions}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
