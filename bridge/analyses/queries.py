"""Named SQL of the analyses."""

LOCK_REQUEST = "SELECT pg_advisory_xact_lock(hashtextextended(%(request_key)s, 0))"

LATEST_FOR_REQUEST = """
SELECT id FROM analyses WHERE request_key = %(request_key)s ORDER BY id DESC LIMIT 1
"""

INSERT_ANALYSIS = """
INSERT INTO analyses (request_key, dataset_id, project_path, ref, variables, client,
                      created_by, instance, project_id, pipeline_id, pipeline_url)
VALUES (%(request_key)s, %(dataset_id)s, %(project_path)s, %(ref)s, %(variables)s, %(client)s,
        %(created_by)s, %(instance)s, %(project_id)s, %(pipeline_id)s, %(pipeline_url)s)
RETURNING id
"""

GET_ANALYSIS = """
SELECT id, dataset_id, project_path, ref, variables, client, created_by, created_at,
       instance, project_id, pipeline_id, pipeline_url
FROM analyses WHERE id = %(id)s
"""

LIST_ANALYSES = """
SELECT id FROM analyses
WHERE (%(client)s::text IS NULL OR client = %(client)s)
  AND (%(dataset_id)s::text IS NULL OR dataset_id = %(dataset_id)s)
  AND (%(before)s::bigint IS NULL OR id < %(before)s)
ORDER BY id DESC LIMIT %(limit)s
"""

PIPELINE_JOBS = """
SELECT build_id, name, stage, status, created_at, started_at, finished_at, runner_class,
       billable, billable_seconds
FROM jobs WHERE instance = %(instance)s AND pipeline_id = %(pipeline_id)s
ORDER BY build_id
"""

PIPELINE_RUNS = """
SELECT DISTINCT ON (job_id) job_id, mlflow_run_id, mlflow_experiment_id, mlflow_tracking_uri,
       image, template, template_version, datasets
FROM runs WHERE instance = %(instance)s AND pipeline_id = %(pipeline_id)s
ORDER BY job_id, id
"""
