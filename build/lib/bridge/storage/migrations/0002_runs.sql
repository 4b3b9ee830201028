-- Run provenance: what each CI job reports about its run (POST /api/v1/runs), with the
-- identity proven by the job's CI ID token.

-- Append-only, like raw_events. The first post of a job is its provenance; a later post
-- that differs is kept beside it for the operator, never in its place (a record that can be
-- rewritten proves nothing); an identical repeat (a retry) adds no row. No foreign key to
-- `jobs`: a job posts while it runs, before GitLab's webhook creates its `jobs` row.
CREATE TABLE runs (
    id                   bigserial PRIMARY KEY,
    received_at          timestamptz NOT NULL DEFAULT now(),
    instance             text NOT NULL,
    job_id               bigint NOT NULL,
    -- From the verified token, never from the body.
    project_id           bigint,
    project_path         text NOT NULL,
    namespace_path       text,
    client               text NOT NULL,
    pipeline_id          bigint NOT NULL,
    sha                  text NOT NULL,
    ref                  text,
    runner_id            bigint,
    -- Every verified claim (not the token itself): the evidence behind the columns above.
    claims               jsonb NOT NULL,
    -- What the job reported.
    mlflow_run_id        text NOT NULL,
    mlflow_experiment_id text NOT NULL,
    mlflow_tracking_uri  text,
    image                text NOT NULL,
    template             text NOT NULL,
    template_version     text NOT NULL,
    datasets             jsonb NOT NULL,
    params               jsonb NOT NULL,
    -- sha256 of the reported fields: tells a retry from a different report.
    fingerprint          text NOT NULL,
    UNIQUE (instance, job_id, fingerprint)
);
