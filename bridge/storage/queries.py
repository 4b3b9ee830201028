"""Named SQL of the bridge. Parameters are always named; no SQL is built from strings."""

# --- recording and applying job facts --------------------------------------------------
#
# One statement per delivery: store it raw, then upsert every job fact it carries. The
# upsert only moves a job forward (a higher status rank, or its first terminal fact) and
# never touches a job whose bill is fixed; it locks the row even when it changes nothing,
# so concurrent facts about one job are serialised by Postgres. Facts arrive as a JSON
# array, so a pipeline event with many jobs is still one statement.

# The fields of one fact as `ledger.fact_row` writes them, with their SQL types: declared
# once, for the record definition below and for `fact_row` (a test holds them equal).
FACT_FIELDS = (
    ("build_id", "bigint"), ("status", "text"), ("status_rank", "smallint"),
    ("terminal", "boolean"), ("project_id", "bigint"), ("project_path", "text"),
    ("client", "text"), ("pipeline_id", "bigint"), ("name", "text"), ("stage", "text"),
    ("ref", "text"), ("sha", "text"), ("created_at", "timestamptz"),
    ("started_at", "timestamptz"), ("finished_at", "timestamptz"), ("duration", "numeric"),
    ("failure_reason", "text"), ("runner_id", "bigint"), ("runner_description", "text"),
    ("runner_type", "text"), ("runner_tags", "text[]"), ("billable", "boolean"),
    ("billable_seconds", "numeric"), ("runner_class", "text"), ("period", "text"),
)  # fmt: skip
_FACT_COLUMNS = ", ".join(f"{name} {kind}" for name, kind in FACT_FIELDS)

_UPSERT_FACTS = f"""
applied AS (
    INSERT INTO jobs (
        instance, build_id, project_id, project_path, client, pipeline_id, name, stage, ref,
        sha, status, status_rank, created_at, started_at, finished_at, duration,
        failure_reason, runner_id, runner_description, runner_type, runner_tags,
        terminal_event_id, billable, billable_seconds, runner_class, period)
    SELECT %(instance)s, f.build_id, f.project_id, f.project_path, f.client, f.pipeline_id,
           f.name, f.stage, f.ref, f.sha, f.status, f.status_rank, f.created_at, f.started_at,
           f.finished_at, f.duration, f.failure_reason, f.runner_id, f.runner_description,
           f.runner_type, COALESCE(f.runner_tags, '{{}}'),
           CASE WHEN f.terminal THEN event.id END,
           f.billable, f.billable_seconds, f.runner_class,
           -- A terminal fact without any timestamp (never seen from GitLab, but possible in
           -- a hand-made event) is billed in the month it was received: still deterministic.
           CASE WHEN f.terminal
                THEN COALESCE(f.period, to_char(event.received_at AT TIME ZONE 'UTC', 'YYYY-MM'))
           END
    FROM event CROSS JOIN jsonb_to_recordset(%(facts)s) AS f({_FACT_COLUMNS})
    ORDER BY f.build_id  -- one lock order for every statement: no deadlocks
    ON CONFLICT (instance, build_id) DO UPDATE SET
        project_id = COALESCE(EXCLUDED.project_id, jobs.project_id),
        project_path = EXCLUDED.project_path,
        client = EXCLUDED.client,
        pipeline_id = COALESCE(EXCLUDED.pipeline_id, jobs.pipeline_id),
        name = COALESCE(EXCLUDED.name, jobs.name),
        stage = COALESCE(EXCLUDED.stage, jobs.stage),
        ref = COALESCE(EXCLUDED.ref, jobs.ref),
        sha = COALESCE(EXCLUDED.sha, jobs.sha),
        status = EXCLUDED.status,
        status_rank = EXCLUDED.status_rank,
        created_at = COALESCE(EXCLUDED.created_at, jobs.created_at),
        started_at = COALESCE(EXCLUDED.started_at, jobs.started_at),
        finished_at = COALESCE(EXCLUDED.finished_at, jobs.finished_at),
        duration = COALESCE(EXCLUDED.duration, jobs.duration),
        failure_reason = COALESCE(EXCLUDED.failure_reason, jobs.failure_reason),
        runner_id = COALESCE(EXCLUDED.runner_id, jobs.runner_id),
        runner_description = COALESCE(EXCLUDED.runner_description, jobs.runner_description),
        runner_type = COALESCE(EXCLUDED.runner_type, jobs.runner_type),
        runner_tags = CASE WHEN EXCLUDED.runner_id IS NULL THEN jobs.runner_tags
                           ELSE EXCLUDED.runner_tags END,
        terminal_event_id = EXCLUDED.terminal_event_id,
        billable = EXCLUDED.billable,
        billable_seconds = EXCLUDED.billable_seconds,
        runner_class = EXCLUDED.runner_class,
        period = EXCLUDED.period,
        updated_at = now()
    WHERE jobs.terminal_event_id IS NULL
      AND (EXCLUDED.terminal_event_id IS NOT NULL OR EXCLUDED.status_rank > jobs.status_rank)
    RETURNING build_id
)
SELECT event.id, event.received_at, ARRAY(SELECT build_id FROM applied) FROM event
"""  # noqa: S608 - composed from the constants above, never from input

# A new delivery: nothing is applied (and no row returned) if its Idempotency-Key was seen.
RECORD_DELIVERY = f"""
WITH event AS (
    INSERT INTO raw_events (instance, source, kind, idempotency_key, headers, body)
    VALUES (%(instance)s, %(source)s, %(kind)s, %(idempotency_key)s, %(headers)s, %(body)s)
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, received_at
),
{_UPSERT_FACTS}"""  # noqa: S608 - composed from constants

# A stored delivery again (`bridge rebuild`).
REAPPLY_EVENT = f"""
WITH event AS (
    SELECT %(event_id)s::bigint AS id, %(received_at)s::timestamptz AS received_at
),
{_UPSERT_FACTS}"""

REPLAY_RAW_EVENTS = """
SELECT id, received_at, instance, source, kind, body FROM raw_events ORDER BY id
"""

BILLED_FACT = """
SELECT status, billable_seconds, runner_id
FROM jobs WHERE instance = %(instance)s AND build_id = %(build_id)s
"""

INSERT_CONFLICT = """
INSERT INTO conflicts (instance, build_id, event_id, recorded, incoming, fingerprint, detected_at)
VALUES (%(instance)s, %(build_id)s, %(event_id)s, %(recorded)s, %(incoming)s, %(fingerprint)s,
        %(detected_at)s)
ON CONFLICT (instance, build_id, fingerprint) DO NOTHING
RETURNING id
"""

TRUNCATE_LEDGER = "TRUNCATE jobs, conflicts"

GET_JOB = """
SELECT instance, build_id, project_id, project_path, client, pipeline_id, name, stage, ref, sha,
       status, created_at, started_at, finished_at, duration, failure_reason, runner_id,
       runner_description, runner_type, runner_tags, billable, billable_seconds, runner_class,
       period, first_seen_at, updated_at
FROM jobs WHERE instance = %(instance)s AND build_id = %(build_id)s
"""

# Newest first, keyset-paginated by build id. NULL filters mean "any".
LIST_JOBS = """
SELECT instance, build_id, project_id, project_path, client, pipeline_id, name, stage, ref, sha,
       status, created_at, started_at, finished_at, duration, failure_reason, runner_id,
       runner_description, runner_type, runner_tags, billable, billable_seconds, runner_class,
       period, first_seen_at, updated_at
FROM jobs
WHERE instance = %(instance)s
  AND (%(client)s::text IS NULL OR client = %(client)s)
  AND (%(project)s::text IS NULL OR project_path = %(project)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(since)s::timestamptz IS NULL OR updated_at >= %(since)s)
  AND (%(before)s::bigint IS NULL OR build_id < %(before)s)
ORDER BY build_id DESC
LIMIT %(limit)s
"""

JOB_CONFLICTS = """
SELECT recorded, incoming, event_id, detected_at FROM conflicts
WHERE instance = %(instance)s AND build_id = %(build_id)s ORDER BY id
"""

# --- usage and invoices ----------------------------------------------------------------

# Billable jobs of `periods` for one client that no finalized invoice has billed yet.
USAGE_BY_CLASS = """
SELECT j.period, j.runner_class, count(*) AS jobs, sum(j.billable_seconds) AS seconds
FROM jobs j
WHERE j.billable AND j.client = %(client)s AND j.period = ANY(%(periods)s)
  AND NOT EXISTS (
      SELECT 1 FROM invoice_jobs i WHERE i.instance = j.instance AND i.build_id = j.build_id)
GROUP BY j.period, j.runner_class
"""

FREEZE_INVOICE_JOBS = """
INSERT INTO invoice_jobs (instance, build_id, client, period)
SELECT j.instance, j.build_id, %(client)s, %(period)s
FROM jobs j
WHERE j.billable AND j.client = %(client)s AND j.period = ANY(%(periods)s)
  AND NOT EXISTS (
      SELECT 1 FROM invoice_jobs i WHERE i.instance = j.instance AND i.build_id = j.build_id)
"""

USAGE_CONFLICTS = """
SELECT c.build_id, c.recorded, c.incoming, c.detected_at
FROM conflicts c JOIN jobs j USING (instance, build_id)
WHERE j.client = %(client)s AND j.period = ANY(%(periods)s)
ORDER BY c.id
"""

FINALIZED_PERIODS = "SELECT period FROM invoices WHERE client = %(client)s ORDER BY period"

GET_INVOICE = """
SELECT document FROM invoices WHERE client = %(client)s AND period = %(period)s
"""

INSERT_INVOICE = """
INSERT INTO invoices (client, period, document, rates)
VALUES (%(client)s, %(period)s, %(document)s, %(rates)s)
"""

CLIENT_KNOWN = """
SELECT EXISTS (SELECT 1 FROM clients WHERE slug = %(client)s)
    OR EXISTS (SELECT 1 FROM jobs WHERE client = %(client)s)
"""

COUNT_CONFLICTS = "SELECT count(*) FROM conflicts"

# --- clients ---------------------------------------------------------------------------

INSERT_CLIENT = """
INSERT INTO clients (slug, token_hash) VALUES (%(slug)s, %(token_hash)s)
ON CONFLICT (slug) DO NOTHING
RETURNING slug
"""

CLIENT_BY_DIGEST = "SELECT slug FROM clients WHERE token_hash = %(token_hash)s"

# --- ledger state ----------------------------------------------------------------------

GET_STATE = "SELECT value FROM ledger_state WHERE key = %(key)s"

SET_STATE = """
INSERT INTO ledger_state (key, value) VALUES (%(key)s, %(value)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
"""

# --- runs ------------------------------------------------------------------------------
#
# Run provenance posted by CI jobs. Recording takes a per-job transaction lock so "is this
# the job's first post?" and the insert see the same history; the read after the lock is a
# statement of its own, so its snapshot includes what a concurrent post just committed.

LOCK_RUN_JOB = """
SELECT pg_advisory_xact_lock(hashtextextended(%(instance)s || '#' || %(job_id)s::text, 0))
"""

# The job's stored reports, the provenance (first) first; at most `limit` of them exist.
RUN_FINGERPRINTS = """
SELECT fingerprint FROM runs
WHERE instance = %(instance)s AND job_id = %(job_id)s
ORDER BY id
"""

COUNT_RUN_OVERFLOW = """
INSERT INTO run_overflow (instance, job_id, reports, last_fingerprint)
VALUES (%(instance)s, %(job_id)s, 1, %(fingerprint)s)
ON CONFLICT (instance, job_id) DO UPDATE
SET reports = run_overflow.reports + 1, last_fingerprint = EXCLUDED.last_fingerprint,
    last_at = now()
"""

RUN_OVERFLOW = """
SELECT reports FROM run_overflow WHERE instance = %(instance)s AND job_id = %(build_id)s
"""

INSERT_RUN = """
INSERT INTO runs (
    instance, job_id, project_id, project_path, namespace_path, client, pipeline_id, sha, ref,
    runner_id, claims, mlflow_run_id, mlflow_experiment_id, mlflow_tracking_uri, image,
    runtime, template, template_version, template_sha, template_reference, datasets, params,
    fingerprint)
VALUES (
    %(instance)s, %(job_id)s, %(project_id)s, %(project_path)s, %(namespace_path)s, %(client)s,
    %(pipeline_id)s, %(sha)s, %(ref)s, %(runner_id)s, %(claims)s, %(mlflow_run_id)s,
    %(mlflow_experiment_id)s, %(mlflow_tracking_uri)s, %(image)s, %(runtime)s, %(template)s,
    %(template_version)s, %(template_sha)s, %(template_reference)s, %(datasets)s, %(params)s,
    %(fingerprint)s)
ON CONFLICT (instance, job_id, fingerprint) DO NOTHING
RETURNING id
"""

# Every post of one job, the provenance (first) first.
JOB_RUNS = """
SELECT received_at, project_id, project_path, namespace_path, client, pipeline_id, sha, ref,
       runner_id, mlflow_run_id, mlflow_experiment_id, mlflow_tracking_uri, image, runtime,
       template, template_version, template_sha, template_reference, datasets, params
FROM runs WHERE instance = %(instance)s AND job_id = %(build_id)s
ORDER BY id
"""

# --- reconciliation sweeps -------------------------------------------------------------

START_SWEEP = "INSERT INTO reconcile_sweeps DEFAULT VALUES RETURNING id, started_at"

END_SWEEP = """
UPDATE reconcile_sweeps
SET finished_at = now(), status = %(status)s, projects = %(projects)s,
    jobs_listed = %(listed)s, recorded = %(recorded)s, error = %(error)s
WHERE id = %(id)s
"""

# The first completed sweep that started at or after `since` (a period's end).
COMPLETED_SWEEP_SINCE = """
SELECT id, started_at, finished_at FROM reconcile_sweeps
WHERE status = 'completed' AND started_at >= %(since)s
ORDER BY started_at LIMIT 1
"""

SWEEPS_BY_STATUS = "SELECT status, count(*) FROM reconcile_sweeps GROUP BY status"

SWEEP_TOTALS = """
SELECT COALESCE(sum(recorded), 0),
       COALESCE(extract(epoch FROM max(started_at) FILTER (WHERE status = 'completed')), 0)
FROM reconcile_sweeps
"""

# Sweeps are serialised by an advisory lock: one still `running` when the lock is taken
# belongs to a process that died mid-sweep.
ABANDON_SWEEPS = """
UPDATE reconcile_sweeps
SET status = 'failed', finished_at = now(),
    error = 'abandoned: the process running it ended before it finished'
WHERE status = 'running'
"""

LAST_COMPLETED_SWEEP = """
SELECT started_at FROM reconcile_sweeps WHERE status = 'completed'
ORDER BY started_at DESC LIMIT 1
"""

PROJECT_WATERMARK = """
SELECT watermark FROM reconcile_projects
WHERE instance = %(instance)s AND project_id = %(project_id)s
"""

OPEN_JOBS = """
SELECT build_id FROM reconcile_open_jobs
WHERE instance = %(instance)s AND project_id = %(project_id)s ORDER BY build_id
"""

# Of the given jobs, those whose bill the ledger has already fixed (a terminal fact).
TERMINAL_IN_LEDGER = """
SELECT build_id FROM jobs
WHERE instance = %(instance)s AND build_id = ANY(%(build_ids)s)
  AND terminal_event_id IS NOT NULL
"""

# Moving the watermark and replacing the open jobs below it happen in one transaction.
SET_WATERMARK = """
INSERT INTO reconcile_projects (instance, project_id, watermark)
VALUES (%(instance)s, %(project_id)s, %(watermark)s)
ON CONFLICT (instance, project_id) DO UPDATE
SET watermark = GREATEST(reconcile_projects.watermark, EXCLUDED.watermark), swept_at = now()
"""

CLEAR_OPEN_JOBS = """
DELETE FROM reconcile_open_jobs WHERE instance = %(instance)s AND project_id = %(project_id)s
"""

ADD_OPEN_JOBS = """
INSERT INTO reconcile_open_jobs (instance, build_id, project_id, status)
SELECT %(instance)s, o.build_id, %(project_id)s, o.status
FROM jsonb_to_recordset(%(jobs)s) AS o(build_id bigint, status text)
ON CONFLICT (instance, build_id) DO UPDATE SET status = EXCLUDED.status
"""

# --- usage collectors and measured usage ------------------------------------------------

INSERT_COLLECTOR = """
INSERT INTO collectors (host, token_hash) VALUES (%(host)s, %(token_hash)s)
ON CONFLICT (host) DO NOTHING
RETURNING host
"""

UPDATE_COLLECTOR_HASH = """
UPDATE collectors SET token_hash = %(token_hash)s, updated_at = now() WHERE host = %(host)s
"""

COLLECTOR_BY_DIGEST = "SELECT host FROM collectors WHERE token_hash = %(token_hash)s"

# Every total only grows: a resent, duplicated or reordered sample changes nothing.
RECORD_SAMPLES = """
INSERT INTO usage_measurements (
    instance, build_id, host, container_id, project_id, started_at, observed_at,
    cpu_seconds, memory_gib_seconds, gpu_seconds)
SELECT %(instance)s, s.job_id, %(host)s, s.container_id, s.project_id, s.started_at,
       s.observed_at, s.cpu_seconds, s.memory_gib_seconds, s.gpu_seconds
FROM jsonb_to_recordset(%(samples)s) AS s(
    job_id bigint, container_id text, project_id bigint, started_at timestamptz,
    observed_at timestamptz, cpu_seconds numeric, memory_gib_seconds numeric,
    gpu_seconds numeric)
ORDER BY s.job_id, s.container_id  -- one lock order for concurrent collectors
ON CONFLICT (instance, build_id, host, container_id) DO UPDATE SET
    observed_at = GREATEST(usage_measurements.observed_at, EXCLUDED.observed_at),
    cpu_seconds = GREATEST(usage_measurements.cpu_seconds, EXCLUDED.cpu_seconds),
    memory_gib_seconds = GREATEST(usage_measurements.memory_gib_seconds,
                                  EXCLUDED.memory_gib_seconds),
    gpu_seconds = GREATEST(usage_measurements.gpu_seconds, EXCLUDED.gpu_seconds),
    updated_at = now()
WHERE EXCLUDED.cpu_seconds > usage_measurements.cpu_seconds
   OR EXCLUDED.memory_gib_seconds > usage_measurements.memory_gib_seconds
   OR EXCLUDED.gpu_seconds > usage_measurements.gpu_seconds
   OR EXCLUDED.observed_at > usage_measurements.observed_at
RETURNING build_id
"""

# Per billable job of `periods` (one client): what was measured beyond what finalized
# invoices already billed. Composed into the queries below.
_UNBILLED_USAGE = """
measured AS (
    SELECT u.instance, u.build_id, sum(u.cpu_seconds) AS cpu,
           sum(u.memory_gib_seconds) AS memory, sum(u.gpu_seconds) AS gpu
    FROM usage_measurements u JOIN jobs j USING (instance, build_id)
    WHERE j.billable AND j.client = %(client)s AND j.period = ANY(%(periods)s)
    GROUP BY u.instance, u.build_id
),
unbilled AS (
    SELECT m.instance, m.build_id,
           m.cpu - COALESCE(sum(b.cpu_seconds), 0) AS cpu,
           m.memory - COALESCE(sum(b.memory_gib_seconds), 0) AS memory,
           m.gpu - COALESCE(sum(b.gpu_seconds), 0) AS gpu
    FROM measured m LEFT JOIN invoice_usage b USING (instance, build_id)
    GROUP BY m.instance, m.build_id, m.cpu, m.memory, m.gpu
)
"""

MEASURED_BY_CLASS = f"""
WITH {_UNBILLED_USAGE}
SELECT j.period, j.runner_class,
       count(*) FILTER (WHERE u.cpu > 0), COALESCE(sum(u.cpu) FILTER (WHERE u.cpu > 0), 0),
       count(*) FILTER (WHERE u.memory > 0),
       COALESCE(sum(u.memory) FILTER (WHERE u.memory > 0), 0),
       count(*) FILTER (WHERE u.gpu > 0), COALESCE(sum(u.gpu) FILTER (WHERE u.gpu > 0), 0)
FROM unbilled u JOIN jobs j USING (instance, build_id)
GROUP BY j.period, j.runner_class
"""  # noqa: S608 - composed from constants

FREEZE_INVOICE_USAGE = f"""
WITH {_UNBILLED_USAGE}
INSERT INTO invoice_usage (instance, build_id, client, period, cpu_seconds,
                           memory_gib_seconds, gpu_seconds)
SELECT instance, build_id, %(client)s, %(period)s, GREATEST(cpu, 0), GREATEST(memory, 0),
       GREATEST(gpu, 0)
FROM unbilled WHERE cpu > 0 OR memory > 0 OR gpu > 0
"""  # noqa: S608 - composed from constants
