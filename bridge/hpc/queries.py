"""Named SQL of HPC usage. Parameters are always named; no SQL is built from strings."""

FIRST_FINGERPRINT = """
SELECT fingerprint FROM hpc_usage WHERE instance = %(instance)s AND build_id = %(build_id)s
"""

INSERT_USAGE = """
INSERT INTO hpc_usage (
    instance, build_id, project_path, client, pipeline_id, period, cluster, slurm_job_id,
    state, exit_code, elapsed_seconds, alloc_cpus, alloc_gpus, alloc_memory_mb, partition,
    mlflow_run_id, claims, fingerprint)
VALUES (
    %(instance)s, %(build_id)s, %(project_path)s, %(client)s, %(pipeline_id)s,
    to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM'), %(cluster)s, %(slurm_job_id)s, %(state)s,
    %(exit_code)s, %(elapsed_seconds)s, %(alloc_cpus)s, %(alloc_gpus)s, %(alloc_memory_mb)s,
    %(partition)s, %(mlflow_run_id)s, %(claims)s, %(fingerprint)s)
ON CONFLICT (instance, build_id) DO NOTHING
RETURNING build_id
"""

# Reports of `periods` (one client) that no finalized invoice has billed yet, per cluster.
USAGE_BY_CLUSTER = """
SELECT h.period, h.cluster, count(*) AS jobs,
       sum(h.elapsed_seconds * h.alloc_cpus) AS cpu_seconds,
       count(*) FILTER (WHERE h.alloc_gpus > 0) AS gpu_jobs,
       sum(h.elapsed_seconds * h.alloc_gpus) AS gpu_seconds
FROM hpc_usage h
WHERE h.client = %(client)s AND h.period = ANY(%(periods)s)
  AND NOT EXISTS (
      SELECT 1 FROM invoice_hpc i WHERE i.instance = h.instance AND i.build_id = h.build_id)
GROUP BY h.period, h.cluster
ORDER BY h.cluster
"""

FREEZE = """
INSERT INTO invoice_hpc (instance, build_id, client, period)
SELECT h.instance, h.build_id, %(client)s, %(period)s
FROM hpc_usage h
WHERE h.client = %(client)s AND h.period = ANY(%(periods)s)
  AND NOT EXISTS (
      SELECT 1 FROM invoice_hpc i WHERE i.instance = h.instance AND i.build_id = h.build_id)
"""
