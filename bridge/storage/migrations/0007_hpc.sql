-- HPC usage: what Slurm accounted for the cluster job a CI job ran (the `slurm-job` template),
-- reported by that CI job with its CI ID token and billed as its own invoice lines (`hpc`).

-- One Slurm job per CI job. Identity and client come from the verified token; the period
-- is the UTC month the bridge received the report (the CI job ends right after it). The
-- first report stands: a different later one is refused, an identical one is a duplicate.
CREATE TABLE hpc_usage (
    instance        text NOT NULL,
    build_id        bigint NOT NULL,
    project_path    text NOT NULL,
    client          text NOT NULL,
    pipeline_id     bigint NOT NULL,
    period          text NOT NULL,
    cluster         text NOT NULL,
    slurm_job_id    text NOT NULL,
    state           text NOT NULL,
    exit_code       integer NOT NULL,
    elapsed_seconds bigint NOT NULL CHECK (elapsed_seconds >= 0),
    alloc_cpus      integer NOT NULL CHECK (alloc_cpus >= 0),
    alloc_gpus      integer NOT NULL CHECK (alloc_gpus >= 0),
    alloc_memory_mb bigint NOT NULL CHECK (alloc_memory_mb >= 0),
    partition       text NOT NULL,
    mlflow_run_id   text,
    claims          jsonb NOT NULL,
    fingerprint     text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, build_id)
);

CREATE INDEX hpc_usage_client_period ON hpc_usage (client, period);

-- Which finalized invoice billed each report: a report is billed once, and one arriving
-- for a finalized period becomes an adjustment of the next open one.
CREATE TABLE invoice_hpc (
    instance text NOT NULL,
    build_id bigint NOT NULL,
    client   text NOT NULL,
    period   text NOT NULL,
    PRIMARY KEY (instance, build_id),
    FOREIGN KEY (client, period) REFERENCES invoices (client, period)
);
