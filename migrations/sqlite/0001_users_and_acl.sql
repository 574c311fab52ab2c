-- registry-auth schema, version 1 (SQLite): `sql_auth` users and `acl_sql` entries.
-- Applied by registry-auth itself (at the first connection, or `registry-auth db migrate`),
-- which records it in registry_auth_schema. Never edit an applied migration: add a new file.

-- One row per user. `password_hash` is bcrypt ($2a$/$2b$/$2y$, e.g. from
-- `registry-auth hash-password` or `htpasswd -nB`); `labels` is a JSON object of lists of
-- strings, e.g. {"team": ["dev", "ops"]}, matched by ACL `labels` conditions.
CREATE TABLE registry_auth_users (
    name          TEXT NOT NULL PRIMARY KEY CHECK (name <> ''),
    password_hash TEXT NOT NULL,
    labels        TEXT NOT NULL DEFAULT '{}'
                  CHECK (json_valid(labels) AND json_type(labels) = 'object'),
    created_at    TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at    TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- The ACL, evaluated in ascending `seq` order (first match wins). `entry` has the shape of one
-- entry of the YAML `acl:` list, as JSON:
--   {"match": {"account": "alice", "name": "alice/*"}, "actions": ["*"], "comment": "…"}
CREATE TABLE registry_auth_acl (
    seq   INTEGER NOT NULL PRIMARY KEY,
    entry TEXT NOT NULL CHECK (json_valid(entry) AND json_type(entry) = 'object')
);
