-- Version 2: how far `maillogsentinel import` got in each file (by the fingerprint of its
-- first line), committed with the imported rows, so that importing a file again adds nothing.
CREATE TABLE imports (
    fingerprint BIGINT      PRIMARY KEY,
    path        TEXT        NOT NULL,
    position    BIGINT      NOT NULL,
    imported_at TIMESTAMPTZ NOT NULL
);
