-- Reconciliation: what the sweeps over GitLab's Jobs API have covered, per project.

-- One row per sweep. Finalizing a period waits for a sweep that started after the period's
-- end and completed, because only such a sweep has seen every job of that period.
CREATE TABLE reconcile_sweeps (
    id          bigserial PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status      text NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'completed', 'failed')),
    projects    integer NOT NULL DEFAULT 0,
    jobs_listed bigint NOT NULL DEFAULT 0,
    recorded    bigint NOT NULL DEFAULT 0,
    error       text
);
CREATE INDEX reconcile_sweeps_completed ON reconcile_sweeps (started_at) WHERE status = 'completed';

-- Per project: every job id at or below `watermark` is in the ledger with its terminal
-- status, never billable (skipped), or listed in reconcile_open_jobs. Only moves up, and
-- only in the transaction that records the open jobs below it.
CREATE TABLE reconcile_projects (
    instance    text NOT NULL,
    project_id  bigint NOT NULL,
    watermark   bigint NOT NULL,
    swept_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, project_id)
);

-- Jobs below a watermark that had not finished when the sweep passed them (running,
-- pending, manual, ...): each later sweep asks GitLab about them again until they finish.
CREATE TABLE reconcile_open_jobs (
    instance   text NOT NULL,
    build_id   bigint NOT NULL,
    project_id bigint NOT NULL,
    status     text NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, build_id)
);
CREATE INDEX reconcile_open_jobs_project ON reconcile_open_jobs (instance, project_id);
