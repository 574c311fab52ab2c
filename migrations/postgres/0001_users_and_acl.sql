-- registry-auth schema, version 1 (PostgreSQL): `sql_auth` users and `acl_sql` entries.
-- Applied by registry-auth itself (at the first connection, or `registry-auth db migrate`),
-- which records it in registry_auth_schema. Never edit an applied migration: add a new file.

-- One row per user. `password_hash` is bcrypt ($2a$/$2b$/$2y$, e.g. from
-- `registry-auth hash-password` or `htpasswd -nB`); `labels` is a JSON object of lists of
-- strings, e.g. {"team": ["dev", "ops"]}, matched by ACL `labels` conditions.
CREATE TABLE registry_auth_users (
    name          TEXT PRIMARY KEY CHECK (name <> ''),
    password_hash TEXT NOT NULL,
    labels        JSONB NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(labels) = 'object'),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The ACL, evaluated in ascending `seq` order (first match wins). `entry` has the shape of one
-- entry of the YAML `acl:` list, as JSON:
--   {"match": {"account": "alice", "name": "alice/*"}, "actions": ["*"], "comment": "…"}
CREATE TABLE registry_auth_acl (
    seq   BIGINT PRIMARY KEY,
    entry JSONB NOT NULL CHECK (jsonb_typeof(entry) = 'object')
);
