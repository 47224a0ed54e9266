-- Version 2: how far `maillogsentinel import` got in each file (by the fingerprint of its
-- first line), committed with the imported rows, so that importing a file again adds nothing.
CREATE TABLE imports (
    fingerprint INTEGER PRIMARY KEY,
    path        TEXT    NOT NULL,
    position    INTEGER NOT NULL,
    imported_at INTEGER NOT NULL
);
