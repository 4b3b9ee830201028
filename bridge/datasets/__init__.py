"""Datasets by content: manifests of sha256-addressed files in S3, metadata in Postgres."""
