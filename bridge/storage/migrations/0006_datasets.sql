-- Datasets by content and the analyses submitted on them.

-- A dataset is a manifest of files addressed by sha256; its id is the sha256 of the
-- canonical manifest (bridge.datasets.manifest), so the same files give the same id and
-- a row is never rewritten. The bytes live in the S3 store under sha256/<digest>.
CREATE TABLE datasets (
    id          text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{64}$'),
    -- The owning GitLab group (full path) and the billing client it maps to, kept beside it
    -- so that a client's listing is one index range.
    group_path  text NOT NULL,
    client      text NOT NULL,
    metadata    jsonb NOT NULL CHECK (jsonb_typeof(metadata) = 'object'),
    files       jsonb NOT NULL CHECK (jsonb_typeof(files) = 'array'),
    file_count  integer NOT NULL,
    total_bytes bigint NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- jsonb_ops (not jsonb_path_ops): it also serves key existence.
CREATE INDEX datasets_metadata ON datasets USING gin (metadata);
CREATE INDEX datasets_newest ON datasets (created_at DESC, id DESC);
CREATE INDEX datasets_client_newest ON datasets (client, created_at DESC, id DESC);

-- One submitted analysis: a pipeline of GROUP/PROJECT@REF on one dataset. `request_key`
-- (sha256 of dataset, project, ref and variables) finds an earlier identical request, so a
-- resubmission returns it instead of starting a second pipeline (unless forced).
CREATE TABLE analyses (
    id           bigserial PRIMARY KEY,
    request_key  text NOT NULL,
    dataset_id   text NOT NULL REFERENCES datasets (id),
    project_path text NOT NULL,
    ref          text NOT NULL,
    variables    jsonb NOT NULL,
    client       text NOT NULL,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- What GitLab answered to POST /projects/:id/pipeline.
    instance     text NOT NULL,
    project_id   bigint NOT NULL,
    pipeline_id  bigint NOT NULL,
    pipeline_url text
);
CREATE INDEX analyses_request ON analyses (request_key, id DESC);
CREATE INDEX analyses_dataset ON analyses (dataset_id, id DESC);
CREATE INDEX analyses_client ON analyses (client, id DESC);
CREATE UNIQUE INDEX analyses_pipeline ON analyses (instance, pipeline_id);

-- An analysis's status is read from its pipeline's jobs.
CREATE INDEX jobs_pipeline ON jobs (instance, pipeline_id);
CREATE INDEX runs_pipeline ON runs (instance, pipeline_id);
