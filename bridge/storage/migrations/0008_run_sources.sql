-- What a run really ran with: the image only when the job ran in one (a shell-executor job,
-- as in local mode, ran in none), the interpreter and package set the job measured, and the
-- component exactly as GitLab resolved it (`version` is null for a branch or commit include).
ALTER TABLE runs
    ALTER COLUMN image DROP NOT NULL,
    ALTER COLUMN template_version DROP NOT NULL,
    ADD COLUMN runtime jsonb,
    ADD COLUMN template_sha text,
    ADD COLUMN template_reference text;
