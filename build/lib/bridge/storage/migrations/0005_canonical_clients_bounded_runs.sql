-- Canonical client ids: the lower-case GitLab group path (GitLab paths are case-insensitive),
-- mapped through the rates file's `clients:`. Rows written before were keyed by the group
-- path as GitLab spelled it ("AcmeLab"); they move to the canonical id ("acmelab"). Should
-- two spellings of one client both have a finalized invoice for the same month, the primary
-- key stops this migration rather than merge two issued invoices: resolve by hand.
-- Finalized documents keep the client as they were issued with.
ALTER TABLE invoice_jobs DROP CONSTRAINT invoice_jobs_client_period_fkey;
ALTER TABLE invoice_usage DROP CONSTRAINT invoice_usage_client_period_fkey;

UPDATE jobs SET client = lower(client) WHERE client <> lower(client);
UPDATE runs SET client = lower(client) WHERE client <> lower(client);
UPDATE clients SET slug = lower(slug) WHERE slug <> lower(slug);
UPDATE invoices SET client = lower(client) WHERE client <> lower(client);
UPDATE invoice_jobs SET client = lower(client) WHERE client <> lower(client);
UPDATE invoice_usage SET client = lower(client) WHERE client <> lower(client);

ALTER TABLE invoice_jobs ADD CONSTRAINT invoice_jobs_client_period_fkey
    FOREIGN KEY (client, period) REFERENCES invoices (client, period);
ALTER TABLE invoice_usage ADD CONSTRAINT invoice_usage_client_period_fkey
    FOREIGN KEY (client, period) REFERENCES invoices (client, period);

ALTER TABLE jobs ADD CONSTRAINT jobs_client_canonical CHECK (client = lower(client));
ALTER TABLE runs ADD CONSTRAINT runs_client_canonical CHECK (client = lower(client));
ALTER TABLE clients ADD CONSTRAINT clients_slug_canonical CHECK (slug = lower(slug));
ALTER TABLE invoices ADD CONSTRAINT invoices_client_canonical CHECK (client = lower(client));

-- Bounded provenance: a job keeps at most a few distinct run reports (`runs`, the first is
-- its provenance); later distinct reports are only counted here, like conflicting terminal
-- facts, so a job cannot grow the ledger without bound while its token is valid.
CREATE TABLE run_overflow (
    instance         text NOT NULL,
    job_id           bigint NOT NULL,
    reports          bigint NOT NULL,
    last_fingerprint text NOT NULL,
    last_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, job_id)
);
