-- The usage ledger: raw deliveries, jobs derived from them, conflicts, clients, invoices.

-- Every accepted delivery as received (the body byte for byte), append-only. The ledger
-- (jobs, conflicts) is derived from these rows and can be rebuilt from them at any time.
CREATE TABLE raw_events (
    id              bigserial PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT now(),
    instance        text NOT NULL,
    source          text NOT NULL,
    kind            text NOT NULL,
    idempotency_key text,
    headers         jsonb NOT NULL,
    -- lz4: a fraction of pglz's CPU per insert, on the hottest write path.
    body            bytea COMPRESSION lz4 NOT NULL
);
-- GitLab's Idempotency-Key is unique per event and survives manual resends.
CREATE UNIQUE INDEX raw_events_idempotency_key ON raw_events (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- One row per GitLab job, identified by (instance, build id). Billing columns are fixed by
-- the first terminal fact and never changed by later ones.
CREATE TABLE jobs (
    instance           text NOT NULL,
    build_id           bigint NOT NULL,
    project_id         bigint,
    project_path       text NOT NULL,
    client             text NOT NULL,
    pipeline_id        bigint,
    name               text,
    stage              text,
    ref                text,
    sha                text,
    status             text NOT NULL,
    status_rank        smallint NOT NULL,
    created_at         timestamptz,
    started_at         timestamptz,
    finished_at        timestamptz,
    duration           numeric,
    failure_reason     text,
    runner_id          bigint,
    runner_description text,
    runner_type        text,
    runner_tags        text[] NOT NULL DEFAULT '{}',
    terminal_event_id  bigint REFERENCES raw_events (id),
    billable           boolean NOT NULL DEFAULT false,
    billable_seconds   numeric,
    runner_class       text,
    period             text,
    first_seen_at      timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, build_id),
    CHECK (NOT billable OR (billable_seconds IS NOT NULL AND runner_class IS NOT NULL
                            AND period ~ '^[0-9]{4}-[0-9]{2}$'))
-- Room on each page for the new version of a row: status updates stay HOT (no index writes).
) WITH (fillfactor = 80);
-- Covers the invoice query (client, period) without touching the table.
CREATE INDEX jobs_invoice ON jobs (client, period, runner_class)
    INCLUDE (billable_seconds, instance, build_id) WHERE billable;
CREATE INDEX jobs_project ON jobs (project_path);

-- A later terminal fact that disagrees with the billed one: kept for the operator, not billed.
CREATE TABLE conflicts (
    id          bigserial PRIMARY KEY,
    instance    text NOT NULL,
    build_id    bigint NOT NULL,
    event_id    bigint NOT NULL REFERENCES raw_events (id),
    recorded    jsonb NOT NULL,
    incoming    jsonb NOT NULL,
    fingerprint text NOT NULL,
    detected_at timestamptz NOT NULL,
    UNIQUE (instance, build_id, fingerprint),
    FOREIGN KEY (instance, build_id) REFERENCES jobs (instance, build_id) ON DELETE CASCADE
);

-- Billing clients that may read their own usage; only a hash of the token is stored.
CREATE TABLE clients (
    slug       text PRIMARY KEY,
    token_hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Finalized invoices: the whole document as issued (json, not jsonb: byte for byte, in its
-- original key order), with the rates it was computed with.
CREATE TABLE invoices (
    client       text NOT NULL,
    period       text NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),
    document     json NOT NULL,
    rates        jsonb NOT NULL,
    finalized_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client, period)
);

-- Which jobs each finalized invoice billed, so no job is billed twice and late jobs of a
-- finalized period become adjustments of the next open one.
CREATE TABLE invoice_jobs (
    instance text NOT NULL,
    build_id bigint NOT NULL,
    client   text NOT NULL,
    period   text NOT NULL,
    PRIMARY KEY (instance, build_id),
    FOREIGN KEY (client, period) REFERENCES invoices (client, period)
);

-- Small facts about the ledger itself (e.g. which rates classification built it).
CREATE TABLE ledger_state (
    key   text PRIMARY KEY,
    value text NOT NULL
);
