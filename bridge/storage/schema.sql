-- The schema the migrations build, as pg_dump shows it (comments and settings removed).
-- Generated, not edited: tests/bridge/test_schema.py checks it and says how to refresh it.

CREATE TABLE public.analyses (
    id bigint NOT NULL,
    request_key text NOT NULL,
    dataset_id text NOT NULL,
    project_path text NOT NULL,
    ref text NOT NULL,
    variables jsonb NOT NULL,
    client text NOT NULL,
    created_by text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    instance text NOT NULL,
    project_id bigint NOT NULL,
    pipeline_id bigint NOT NULL,
    pipeline_url text
);
CREATE SEQUENCE public.analyses_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.analyses_id_seq OWNED BY public.analyses.id;
CREATE TABLE public.clients (
    slug text NOT NULL,
    token_hash text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT clients_slug_canonical CHECK ((slug = lower(slug)))
);
CREATE TABLE public.collectors (
    host text NOT NULL,
    token_hash text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE public.conflicts (
    id bigint NOT NULL,
    instance text NOT NULL,
    build_id bigint NOT NULL,
    event_id bigint NOT NULL,
    recorded jsonb NOT NULL,
    incoming jsonb NOT NULL,
    fingerprint text NOT NULL,
    detected_at timestamp with time zone NOT NULL
);
CREATE SEQUENCE public.conflicts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.conflicts_id_seq OWNED BY public.conflicts.id;
CREATE TABLE public.datasets (
    id text NOT NULL,
    group_path text NOT NULL,
    client text NOT NULL,
    metadata jsonb NOT NULL,
    files jsonb NOT NULL,
    file_count integer NOT NULL,
    total_bytes bigint NOT NULL,
    created_by text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT datasets_files_check CHECK ((jsonb_typeof(files) = 'array'::text)),
    CONSTRAINT datasets_id_check CHECK ((id ~ '^[0-9a-f]{64}$'::text)),
    CONSTRAINT datasets_metadata_check CHECK ((jsonb_typeof(metadata) = 'object'::text))
);
CREATE TABLE public.hpc_usage (
    instance text NOT NULL,
    build_id bigint NOT NULL,
    project_path text NOT NULL,
    client text NOT NULL,
    pipeline_id bigint NOT NULL,
    period text NOT NULL,
    cluster text NOT NULL,
    slurm_job_id text NOT NULL,
    state text NOT NULL,
    exit_code integer NOT NULL,
    elapsed_seconds bigint NOT NULL,
    alloc_cpus integer NOT NULL,
    alloc_gpus integer NOT NULL,
    alloc_memory_mb bigint NOT NULL,
    partition text NOT NULL,
    mlflow_run_id text,
    claims jsonb NOT NULL,
    fingerprint text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT hpc_usage_alloc_cpus_check CHECK ((alloc_cpus >= 0)),
    CONSTRAINT hpc_usage_alloc_gpus_check CHECK ((alloc_gpus >= 0)),
    CONSTRAINT hpc_usage_alloc_memory_mb_check CHECK ((alloc_memory_mb >= 0)),
    CONSTRAINT hpc_usage_elapsed_seconds_check CHECK ((elapsed_seconds >= 0))
);
CREATE TABLE public.invoice_hpc (
    instance text NOT NULL,
    build_id bigint NOT NULL,
    client text NOT NULL,
    period text NOT NULL
);
CREATE TABLE public.invoice_jobs (
    instance text NOT NULL,
    build_id bigint NOT NULL,
    client text NOT NULL,
    period text NOT NULL
);
CREATE TABLE public.invoice_usage (
    instance text NOT NULL,
    build_id bigint NOT NULL,
    client text NOT NULL,
    period text NOT NULL,
    cpu_seconds numeric NOT NULL,
    memory_gib_seconds numeric NOT NULL,
    gpu_seconds numeric NOT NULL
);
CREATE TABLE public.invoices (
    client text NOT NULL,
    period text NOT NULL,
    document json NOT NULL,
    rates jsonb NOT NULL,
    finalized_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT invoices_client_canonical CHECK ((client = lower(client))),
    CONSTRAINT invoices_period_check CHECK ((period ~ '^[0-9]{4}-[0-9]{2}$'::text))
);
CREATE TABLE public.jobs (
    instance text NOT NULL,
    build_id bigint NOT NULL,
    project_id bigint,
    project_path text NOT NULL,
    client text NOT NULL,
    pipeline_id bigint,
    name text,
    stage text,
    ref text,
    sha text,
    status text NOT NULL,
    status_rank smallint NOT NULL,
    created_at timestamp with time zone,
    started_at timestamp with time zone,
    finished_at timestamp with time zone,
    duration numeric,
    failure_reason text,
    runner_id bigint,
    runner_description text,
    runner_type text,
    runner_tags text[] DEFAULT '{}'::text[] NOT NULL,
    terminal_event_id bigint,
    billable boolean DEFAULT false NOT NULL,
    billable_seconds numeric,
    runner_class text,
    period text,
    first_seen_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT jobs_check CHECK (((NOT billable) OR ((billable_seconds IS NOT NULL) AND (runner_class IS NOT NULL) AND (period ~ '^[0-9]{4}-[0-9]{2}$'::text)))),
    CONSTRAINT jobs_client_canonical CHECK ((client = lower(client)))
)
WITH (fillfactor='80');
CREATE TABLE public.ledger_state (
    key text NOT NULL,
    value text NOT NULL
);
CREATE TABLE public.raw_events (
    id bigint NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    instance text NOT NULL,
    source text NOT NULL,
    kind text NOT NULL,
    idempotency_key text,
    headers jsonb NOT NULL,
    body bytea NOT NULL
);
ALTER TABLE ONLY public.raw_events ALTER COLUMN body SET COMPRESSION lz4;
CREATE SEQUENCE public.raw_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.raw_events_id_seq OWNED BY public.raw_events.id;
CREATE TABLE public.reconcile_open_jobs (
    instance text NOT NULL,
    build_id bigint NOT NULL,
    project_id bigint NOT NULL,
    status text NOT NULL,
    seen_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE public.reconcile_projects (
    instance text NOT NULL,
    project_id bigint NOT NULL,
    watermark bigint NOT NULL,
    swept_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE public.reconcile_sweeps (
    id bigint NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    finished_at timestamp with time zone,
    status text DEFAULT 'running'::text NOT NULL,
    projects integer DEFAULT 0 NOT NULL,
    jobs_listed bigint DEFAULT 0 NOT NULL,
    recorded bigint DEFAULT 0 NOT NULL,
    error text,
    CONSTRAINT reconcile_sweeps_status_check CHECK ((status = ANY (ARRAY['running'::text, 'completed'::text, 'failed'::text])))
);
CREATE SEQUENCE public.reconcile_sweeps_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.reconcile_sweeps_id_seq OWNED BY public.reconcile_sweeps.id;
CREATE TABLE public.run_overflow (
    instance text NOT NULL,
    job_id bigint NOT NULL,
    reports bigint NOT NULL,
    last_fingerprint text NOT NULL,
    last_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE public.runs (
    id bigint NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    instance text NOT NULL,
    job_id bigint NOT NULL,
    project_id bigint,
    project_path text NOT NULL,
    namespace_path text,
    client text NOT NULL,
    pipeline_id bigint NOT NULL,
    sha text NOT NULL,
    ref text,
    runner_id bigint,
    claims jsonb NOT NULL,
    mlflow_run_id text NOT NULL,
    mlflow_experiment_id text NOT NULL,
    mlflow_tracking_uri text,
    image text,
    template text NOT NULL,
    template_version text,
    datasets jsonb NOT NULL,
    params jsonb NOT NULL,
    fingerprint text NOT NULL,
    runtime jsonb,
    template_sha text,
    template_reference text,
    CONSTRAINT runs_client_canonical CHECK ((client = lower(client)))
);
CREATE SEQUENCE public.runs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.runs_id_seq OWNED BY public.runs.id;
CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE public.usage_measurements (
    instance text NOT NULL,
    build_id bigint NOT NULL,
    host text NOT NULL,
    container_id text NOT NULL,
    project_id bigint NOT NULL,
    started_at timestamp with time zone NOT NULL,
    observed_at timestamp with time zone NOT NULL,
    cpu_seconds numeric NOT NULL,
    memory_gib_seconds numeric NOT NULL,
    gpu_seconds numeric NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT usage_measurements_cpu_seconds_check CHECK ((cpu_seconds >= (0)::numeric)),
    CONSTRAINT usage_measurements_gpu_seconds_check CHECK ((gpu_seconds >= (0)::numeric)),
    CONSTRAINT usage_measurements_memory_gib_seconds_check CHECK ((memory_gib_seconds >= (0)::numeric))
);
ALTER TABLE ONLY public.analyses ALTER COLUMN id SET DEFAULT nextval('public.analyses_id_seq'::regclass);
ALTER TABLE ONLY public.conflicts ALTER COLUMN id SET DEFAULT nextval('public.conflicts_id_seq'::regclass);
ALTER TABLE ONLY public.raw_events ALTER COLUMN id SET DEFAULT nextval('public.raw_events_id_seq'::regclass);
ALTER TABLE ONLY public.reconcile_sweeps ALTER COLUMN id SET DEFAULT nextval('public.reconcile_sweeps_id_seq'::regclass);
ALTER TABLE ONLY public.runs ALTER COLUMN id SET DEFAULT nextval('public.runs_id_seq'::regclass);
ALTER TABLE ONLY public.analyses
    ADD CONSTRAINT analyses_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.clients
    ADD CONSTRAINT clients_pkey PRIMARY KEY (slug);
ALTER TABLE ONLY public.clients
    ADD CONSTRAINT clients_token_hash_key UNIQUE (token_hash);
ALTER TABLE ONLY public.collectors
    ADD CONSTRAINT collectors_pkey PRIMARY KEY (host);
ALTER TABLE ONLY public.collectors
    ADD CONSTRAINT collectors_token_hash_key UNIQUE (token_hash);
ALTER TABLE ONLY public.conflicts
    ADD CONSTRAINT conflicts_instance_build_id_fingerprint_key UNIQUE (instance, build_id, fingerprint);
ALTER TABLE ONLY public.conflicts
    ADD CONSTRAINT conflicts_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.datasets
    ADD CONSTRAINT datasets_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.hpc_usage
    ADD CONSTRAINT hpc_usage_pkey PRIMARY KEY (instance, build_id);
ALTER TABLE ONLY public.invoice_hpc
    ADD CONSTRAINT invoice_hpc_pkey PRIMARY KEY (instance, build_id);
ALTER TABLE ONLY public.invoice_jobs
    ADD CONSTRAINT invoice_jobs_pkey PRIMARY KEY (instance, build_id);
ALTER TABLE ONLY public.invoice_usage
    ADD CONSTRAINT invoice_usage_pkey PRIMARY KEY (instance, build_id, client, period);
ALTER TABLE ONLY public.invoices
    ADD CONSTRAINT invoices_pkey PRIMARY KEY (client, period);
ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (instance, build_id);
ALTER TABLE ONLY public.ledger_state
    ADD CONSTRAINT ledger_state_pkey PRIMARY KEY (key);
ALTER TABLE ONLY public.raw_events
    ADD CONSTRAINT raw_events_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.reconcile_open_jobs
    ADD CONSTRAINT reconcile_open_jobs_pkey PRIMARY KEY (instance, build_id);
ALTER TABLE ONLY public.reconcile_projects
    ADD CONSTRAINT reconcile_projects_pkey PRIMARY KEY (instance, project_id);
ALTER TABLE ONLY public.reconcile_sweeps
    ADD CONSTRAINT reconcile_sweeps_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.run_overflow
    ADD CONSTRAINT run_overflow_pkey PRIMARY KEY (instance, job_id);
ALTER TABLE ONLY public.runs
    ADD CONSTRAINT runs_instance_job_id_fingerprint_key UNIQUE (instance, job_id, fingerprint);
ALTER TABLE ONLY public.runs
    ADD CONSTRAINT runs_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);
ALTER TABLE ONLY public.usage_measurements
    ADD CONSTRAINT usage_measurements_pkey PRIMARY KEY (instance, build_id, host, container_id);
CREATE INDEX analyses_client ON public.analyses USING btree (client, id DESC);
CREATE INDEX analyses_dataset ON public.analyses USING btree (dataset_id, id DESC);
CREATE UNIQUE INDEX analyses_pipeline ON public.analyses USING btree (instance, pipeline_id);
CREATE INDEX analyses_request ON public.analyses USING btree (request_key, id DESC);
CREATE INDEX datasets_client_newest ON public.datasets USING btree (client, created_at DESC, id DESC);
CREATE INDEX datasets_metadata ON public.datasets USING gin (metadata);
CREATE INDEX datasets_newest ON public.datasets USING btree (created_at DESC, id DESC);
CREATE INDEX hpc_usage_client_period ON public.hpc_usage USING btree (client, period);
CREATE INDEX jobs_invoice ON public.jobs USING btree (client, period, runner_class) INCLUDE (billable_seconds, instance, build_id) WHERE billable;
CREATE INDEX jobs_pipeline ON public.jobs USING btree (instance, pipeline_id);
CREATE INDEX jobs_project ON public.jobs USING btree (project_path);
CREATE UNIQUE INDEX raw_events_idempotency_key ON public.raw_events USING btree (idempotency_key) WHERE (idempotency_key IS NOT NULL);
CREATE INDEX reconcile_open_jobs_project ON public.reconcile_open_jobs USING btree (instance, project_id);
CREATE INDEX reconcile_sweeps_completed ON public.reconcile_sweeps USING btree (started_at) WHERE (status = 'completed'::text);
CREATE INDEX runs_pipeline ON public.runs USING btree (instance, pipeline_id);
ALTER TABLE ONLY public.analyses
    ADD CONSTRAINT analyses_dataset_id_fkey FOREIGN KEY (dataset_id) REFERENCES public.datasets(id);
ALTER TABLE ONLY public.conflicts
    ADD CONSTRAINT conflicts_event_id_fkey FOREIGN KEY (event_id) REFERENCES public.raw_events(id);
ALTER TABLE ONLY public.conflicts
    ADD CONSTRAINT conflicts_instance_build_id_fkey FOREIGN KEY (instance, build_id) REFERENCES public.jobs(instance, build_id) ON DELETE CASCADE;
ALTER TABLE ONLY public.invoice_hpc
    ADD CONSTRAINT invoice_hpc_client_period_fkey FOREIGN KEY (client, period) REFERENCES public.invoices(client, period);
ALTER TABLE ONLY public.invoice_jobs
    ADD CONSTRAINT invoice_jobs_client_period_fkey FOREIGN KEY (client, period) REFERENCES public.invoices(client, period);
ALTER TABLE ONLY public.invoice_usage
    ADD CONSTRAINT invoice_usage_client_period_fkey FOREIGN KEY (client, period) REFERENCES public.invoices(client, period);
ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_terminal_event_id_fkey FOREIGN KEY (terminal_event_id) REFERENCES public.raw_events(id);
ALTER TABLE ONLY public.usage_measurements
    ADD CONSTRAINT usage_measurements_host_fkey FOREIGN KEY (host) REFERENCES public.collectors(host);
