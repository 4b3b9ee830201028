-- Measured usage: runner-host collectors, their per-container totals, and what invoices billed.

-- One usage collector per runner host; only a hash of its token is stored.
CREATE TABLE collectors (
    host       text PRIMARY KEY,
    token_hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Cumulative totals of one job container as its host's collector last reported them. Each
-- total only grows (GREATEST on every upsert), so a resent or reordered sample changes
-- nothing and a job's usage is the sum over its containers.
CREATE TABLE usage_measurements (
    instance           text NOT NULL,
    build_id           bigint NOT NULL,
    host               text NOT NULL REFERENCES collectors (host),
    container_id       text NOT NULL,
    project_id         bigint NOT NULL,
    started_at         timestamptz NOT NULL,
    observed_at        timestamptz NOT NULL,
    cpu_seconds        numeric NOT NULL CHECK (cpu_seconds >= 0),
    memory_gib_seconds numeric NOT NULL CHECK (memory_gib_seconds >= 0),
    gpu_seconds        numeric NOT NULL CHECK (gpu_seconds >= 0),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, build_id, host, container_id)
);

-- The measured quantities each finalized invoice billed per job: what grows later is billed
-- as an adjustment of the next open period, never twice.
CREATE TABLE invoice_usage (
    instance           text NOT NULL,
    build_id           bigint NOT NULL,
    client             text NOT NULL,
    period             text NOT NULL,
    cpu_seconds        numeric NOT NULL,
    memory_gib_seconds numeric NOT NULL,
    gpu_seconds        numeric NOT NULL,
    PRIMARY KEY (instance, build_id, client, period),
    FOREIGN KEY (client, period) REFERENCES invoices (client, period)
);
