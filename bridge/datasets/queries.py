"""Named SQL of the dataset registry."""

INSERT_DATASET = """
INSERT INTO datasets (id, group_path, client, metadata, files, file_count, total_bytes,
                      created_by)
VALUES (%(id)s, %(group)s, %(client)s, %(metadata)s, %(files)s, %(file_count)s,
        %(total_bytes)s, %(created_by)s)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""

GET_DATASET = """
SELECT id, group_path AS "group", client, metadata, files, file_count, total_bytes,
       created_by, created_at
FROM datasets WHERE id = %(id)s
"""

# The listing's fixed part; bridge.datasets.service appends one `metadata @? %(cN)s` per
# metadata condition (composed with psycopg.sql, values always as parameters).
LIST_DATASETS = """
SELECT id, group_path AS "group", client, metadata, files, file_count, total_bytes,
       created_by, created_at
FROM datasets
WHERE (%(client)s::text IS NULL OR client = %(client)s)
  AND (%(group)s::text IS NULL OR group_path = %(group)s
       OR starts_with(group_path, %(group)s || '/'))
  AND (%(created_by)s::text IS NULL OR created_by = %(created_by)s)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)
  AND (%(after_at)s::timestamptz IS NULL OR (created_at, id) < (%(after_at)s, %(after_id)s))
"""

LIST_ORDER = " ORDER BY created_at DESC, id DESC LIMIT %(limit)s"

DATASET_ANALYSES = """
SELECT id FROM analyses WHERE dataset_id = %(id)s ORDER BY id DESC
"""
