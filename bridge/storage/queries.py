"""Named SQL of the bridge. Parameters are always named; no SQL is built from strings."""

# --- raw events ------------------------------------------------------------------------

INSERT_RAW_EVENT = """
INSERT INTO raw_events (instance, source, kind, idempotency_key, headers, payload)
VALUES (%(instance)s, %(source)s, %(kind)s, %(idempotency_key)s, %(headers)s, %(payload)s)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, received_at
"""

REPLAY_RAW_EVENTS = """
SELECT id, received_at, instance, source, kind, payload FROM raw_events ORDER BY id
"""

# --- jobs ------------------------------------------------------------------------------

_JOB_COLUMNS = """
    instance, build_id, project_id, project_path, client, pipeline_id, name, stage, ref, sha,
    status, created_at, started_at, finished_at, duration, failure_reason,
    runner_id, runner_description, runner_type, runner_tags,
    terminal_event_id, billable, billable_seconds, runner_class, period
"""

INSERT_JOB = f"""
INSERT INTO jobs ({_JOB_COLUMNS})
VALUES (
    %(instance)s, %(build_id)s, %(project_id)s, %(project_path)s, %(client)s, %(pipeline_id)s,
    %(name)s, %(stage)s, %(ref)s, %(sha)s, %(status)s, %(created_at)s, %(started_at)s,
    %(finished_at)s, %(duration)s, %(failure_reason)s, %(runner_id)s, %(runner_description)s,
    %(runner_type)s, %(runner_tags)s, %(terminal_event_id)s, %(billable)s,
    %(billable_seconds)s, %(runner_class)s, %(period)s
)
ON CONFLICT (instance, build_id) DO NOTHING
RETURNING build_id
"""  # noqa: S608 - the f-string only inserts the fixed column list above

LOCK_JOB = """
SELECT status, terminal_event_id IS NOT NULL AS terminal, billable_seconds, runner_id
FROM jobs WHERE instance = %(instance)s AND build_id = %(build_id)s
FOR UPDATE
"""

# Progress or the first terminal fact: newer values win, missing ones keep what we knew.
ADVANCE_JOB = """
UPDATE jobs SET
    project_id = COALESCE(%(project_id)s, project_id),
    project_path = %(project_path)s,
    client = %(client)s,
    pipeline_id = COALESCE(%(pipeline_id)s, pipeline_id),
    name = COALESCE(%(name)s, name),
    stage = COALESCE(%(stage)s, stage),
    ref = COALESCE(%(ref)s, ref),
    sha = COALESCE(%(sha)s, sha),
    status = %(status)s,
    created_at = COALESCE(%(created_at)s, created_at),
    started_at = COALESCE(%(started_at)s, started_at),
    finished_at = COALESCE(%(finished_at)s, finished_at),
    duration = COALESCE(%(duration)s, duration),
    failure_reason = COALESCE(%(failure_reason)s, failure_reason),
    runner_id = COALESCE(%(runner_id)s, runner_id),
    runner_description = COALESCE(%(runner_description)s, runner_description),
    runner_type = COALESCE(%(runner_type)s, runner_type),
    runner_tags = CASE WHEN %(runner_id)s::bigint IS NULL THEN runner_tags
                       ELSE %(runner_tags)s END,
    terminal_event_id = %(terminal_event_id)s,
    billable = %(billable)s,
    billable_seconds = %(billable_seconds)s,
    runner_class = %(runner_class)s,
    period = %(period)s,
    updated_at = now()
WHERE instance = %(instance)s AND build_id = %(build_id)s
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
