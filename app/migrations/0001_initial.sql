-- Initial schema of the reconciliation service.
-- Money is bigint minor units; uploaded bytes live in imports.data so database backups cover them.

CREATE TABLE api_tokens (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    token_sha256  text NOT NULL UNIQUE,
    prefix        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    last_used_at  timestamptz
);

CREATE TABLE reconciliations (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    rules       jsonb,
    status      text NOT NULL DEFAULT 'draft'
                CHECK (status IN ('draft', 'queued', 'running', 'succeeded', 'failed')),
    current_run_id bigint,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE imports (
    id                bigserial PRIMARY KEY,
    reconciliation_id bigint NOT NULL REFERENCES reconciliations ON DELETE CASCADE,
    side              text NOT NULL CHECK (side IN ('left', 'right')),
    filename          text NOT NULL,
    format            text NOT NULL,
    content_sha256    text NOT NULL,
    size_bytes        bigint NOT NULL,
    options           jsonb NOT NULL DEFAULT '{}'::jsonb,
    balances          jsonb,
    record_count      integer NOT NULL,
    data              bytea NOT NULL,
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT imports_same_file_once UNIQUE (reconciliation_id, content_sha256)
);

CREATE TABLE records (
    id                bigserial PRIMARY KEY,
    reconciliation_id bigint NOT NULL REFERENCES reconciliations ON DELETE CASCADE,
    import_id         bigint NOT NULL REFERENCES imports ON DELETE CASCADE,
    side              text NOT NULL CHECK (side IN ('left', 'right')),
    source_id         text,
    line              integer,
    reference         text,
    amount_minor      bigint NOT NULL,
    currency          text NOT NULL,
    booking_date      date,
    value_date        date,
    counterparty      text,
    description       text,
    raw               text
);
CREATE INDEX records_recon_side ON records (reconciliation_id, side, id);
CREATE INDEX records_import ON records (import_id);

CREATE TABLE runs (
    id                bigserial PRIMARY KEY,
    reconciliation_id bigint NOT NULL REFERENCES reconciliations ON DELETE CASCADE,
    status            text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    dry_run           boolean NOT NULL DEFAULT false,
    rules             jsonb,
    summary           jsonb,
    error             text,
    job_id            bigint,
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz
);
CREATE INDEX runs_recon ON runs (reconciliation_id, id DESC);
ALTER TABLE reconciliations ADD CONSTRAINT reconciliations_current_run
    FOREIGN KEY (current_run_id) REFERENCES runs ON DELETE SET NULL;

-- A match links one or more left records to one or more right records.
-- status: suggested | confirmed are "active"; rejected | unlinked are kept for the audit trail.
CREATE TABLE matches (
    id                bigserial PRIMARY KEY,
    run_id            bigint NOT NULL REFERENCES runs ON DELETE CASCADE,
    reconciliation_id bigint NOT NULL REFERENCES reconciliations ON DELETE CASCADE,
    kind              text NOT NULL CHECK (kind IN ('pair', 'group')),
    status            text NOT NULL CHECK (status IN ('suggested', 'confirmed', 'rejected', 'unlinked')),
    origin            text NOT NULL CHECK (origin IN ('engine', 'manual')),
    rule              text,
    score             double precision,
    criteria          jsonb,
    amount_delta_minor bigint,
    date_delta_days   integer,
    left_amount_minor  bigint,
    right_amount_minor bigint,
    currency          text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX matches_run_status ON matches (run_id, status, id);

CREATE TABLE match_items (
    match_id   bigint NOT NULL REFERENCES matches ON DELETE CASCADE,
    run_id     bigint NOT NULL,
    record_id  bigint NOT NULL REFERENCES records ON DELETE CASCADE,
    side       text NOT NULL CHECK (side IN ('left', 'right')),
    active     boolean NOT NULL DEFAULT true,
    PRIMARY KEY (match_id, record_id)
);
-- No record is used twice among the active matches of a run (engine or manual).
CREATE UNIQUE INDEX match_items_record_once ON match_items (run_id, record_id) WHERE active;
CREATE INDEX match_items_record ON match_items (record_id);

CREATE TABLE discrepancies (
    id                bigserial PRIMARY KEY,
    run_id            bigint NOT NULL REFERENCES runs ON DELETE CASCADE,
    match_id          bigint REFERENCES matches ON DELETE CASCADE,
    field             text NOT NULL,
    left_value        text,
    right_value       text,
    delta             text
);
CREATE INDEX discrepancies_run ON discrepancies (run_id, id);
CREATE INDEX discrepancies_match ON discrepancies (match_id);

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor       text NOT NULL,
    token_id    bigint,
    role        text,
    action      text NOT NULL,
    entity      text NOT NULL,
    entity_id   text,
    request_id  text,
    before      jsonb,
    after       jsonb
);
CREATE INDEX audit_log_entity ON audit_log (entity, entity_id, id);

-- Durable jobs: claimed with FOR UPDATE SKIP LOCKED, kept alive by heartbeats; a job whose
-- worker stopped heartbeating for the lease is claimed again by another worker.
CREATE TABLE jobs (
    id             bigserial PRIMARY KEY,
    kind           text NOT NULL,
    payload        jsonb NOT NULL,
    status         text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    attempts       integer NOT NULL DEFAULT 0,
    max_attempts   integer NOT NULL DEFAULT 3,
    run_after      timestamptz NOT NULL DEFAULT now(),
    locked_by      text,
    locked_at      timestamptz,
    heartbeat_at   timestamptz,
    stage          text,
    processed      bigint NOT NULL DEFAULT 0,
    total          bigint NOT NULL DEFAULT 0,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);
CREATE INDEX jobs_ready ON jobs (run_after, id) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs (heartbeat_at) WHERE status = 'running';
