-- The schema the migrations build, as pg_dump shows it (comments and settings removed).
-- Generated, not edited: tests/bridge/test_schema.py checks it and says how to refresh it.

CREATE TABLE public.clients (
    slug text NOT NULL,
    token_hash text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
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
CREATE TABLE public.invoice_jobs (
    instance text NOT NULL,
    build_id bigint NOT NULL,
    client text NOT NULL,
    period text NOT NULL
);
CREATE TABLE public.invoices (
    client text NOT NULL,
    period text NOT NULL,
    document json NOT NULL,
    rates jsonb NOT NULL,
    finalized_at timestamp with time zone DEFAULT now() NOT NULL,
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
    CONSTRAINT jobs_check CHECK (((NOT billable) OR ((billable_seconds IS NOT NULL) AND (runner_class IS NOT NULL) AND (period ~ '^[0-9]{4}-[0-9]{2}$'::text))))
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
CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);
ALTER TABLE ONLY public.conflicts ALTER COLUMN id SET DEFAULT nextval('public.conflicts_id_seq'::regclass);
ALTER TABLE ONLY public.raw_events ALTER COLUMN id SET DEFAULT nextval('public.raw_events_id_seq'::regclass);
ALTER TABLE ONLY public.clients
    ADD CONSTRAINT clients_pkey PRIMARY KEY (slug);
ALTER TABLE ONLY public.clients
    ADD CONSTRAINT clients_token_hash_key UNIQUE (token_hash);
ALTER TABLE ONLY public.conflicts
    ADD CONSTRAINT conflicts_instance_build_id_fingerprint_key UNIQUE (instance, build_id, fingerprint);
ALTER TABLE ONLY public.conflicts
    ADD CONSTRAINT conflicts_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.invoice_jobs
    ADD CONSTRAINT invoice_jobs_pkey PRIMARY KEY (instance, build_id);
ALTER TABLE ONLY public.invoices
    ADD CONSTRAINT invoices_pkey PRIMARY KEY (client, period);
ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (instance, build_id);
ALTER TABLE ONLY public.ledger_state
    ADD CONSTRAINT ledger_state_pkey PRIMARY KEY (key);
ALTER TABLE ONLY public.raw_events
    ADD CONSTRAINT raw_events_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);
CREATE INDEX jobs_invoice ON public.jobs USING btree (client, period, runner_class) INCLUDE (billable_seconds, instance, build_id) WHERE billable;
CREATE INDEX jobs_project ON public.jobs USING btree (project_path);
CREATE UNIQUE INDEX raw_events_idempotency_key ON public.raw_events USING btree (idempotency_key) WHERE (idempotency_key IS NOT NULL);
ALTER TABLE ONLY public.conflicts
    ADD CONSTRAINT conflicts_event_id_fkey FOREIGN KEY (event_id) REFERENCES public.raw_events(id);
ALTER TABLE ONLY public.conflicts
    ADD CONSTRAINT conflicts_instance_build_id_fkey FOREIGN KEY (instance, build_id) REFERENCES public.jobs(instance, build_id) ON DELETE CASCADE;
ALTER TABLE ONLY public.invoice_jobs
    ADD CONSTRAINT invoice_jobs_client_period_fkey FOREIGN KEY (client, period) REFERENCES public.invoices(client, period);
ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_terminal_event_id_fkey FOREIGN KEY (terminal_event_id) REFERENCES public.raw_events(id);
