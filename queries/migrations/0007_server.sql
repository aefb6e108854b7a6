-- What ferry serve keeps: the project as files (one source of truth that
-- ferry import/export move to and from a folder in git, byte for byte),
-- every change to them (who, when, before and after), the secrets sent
-- through the API (encrypted), and API tokens (hashed).

CREATE TABLE ferry.project_files (
    path       text PRIMARY KEY,           -- "ferry.yaml", "syncs/contacts.yaml", "syncs/contacts.sql" …
    content    bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);

-- One row per change of one file: content_before NULL for a new file,
-- content_after NULL for a deleted one. version groups the files one change
-- touched (an import, an API call), and grows with every change.
CREATE TABLE ferry.project_history (
    id             bigserial PRIMARY KEY,
    version        bigint NOT NULL,
    path           text NOT NULL,
    content_before bytea,
    content_after  bytea,
    actor          text NOT NULL,
    reason         text NOT NULL,
    changed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX project_history_version_idx ON ferry.project_history (version);
CREATE INDEX project_history_path_idx ON ferry.project_history (path, id DESC);

-- The project's version: servers reload the project when it moved.
CREATE TABLE ferry.project_version (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO ferry.project_version (version) VALUES (0);

-- Secrets a connection names (as it names environment variables), sent
-- through the API: AES-256-GCM under the key key_id names, never returned.
CREATE TABLE ferry.secrets (
    name       text PRIMARY KEY,
    key_id     text NOT NULL,
    nonce      bytea NOT NULL,
    ciphertext bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);

-- API tokens: only a hash of the secret part is kept.
CREATE TABLE ferry.tokens (
    id           text PRIMARY KEY,          -- the public part of the token
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    secret_hash  bytea NOT NULL,            -- sha256 of the secret part
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
