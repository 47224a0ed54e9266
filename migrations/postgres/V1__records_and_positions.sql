-- maillogsentinel's PostgreSQL store, version 1: the intrusion record, the logins record and
-- the source positions they account for, committed in one transaction with them. Several
-- daemons (a fleet of mail servers) may write one database: the rows tell them apart by
-- `server`, the positions by `instance` (each daemon's `[output] instance`).
--
-- Columns are the CSV's: `timestamp` is the instant, `logged` the time as logged (RFC 3339
-- with the log's offset and sub-seconds, the CSV's `timestamp`). Text is stored as the client
-- sent it: escaping is for each output (CSV, HTML, terminal), not here.

-- Indexed for what the program asks: windows of time (reports, the alerts' memory), and a
-- server's windows (a fleet's reports). Not by address or username: each is a random insert
-- per row, and together they made a backfill 1.9x slower (docs/benchmarks.md); add them if
-- you query by them often (CREATE INDEX ... ON events (ip)).
CREATE TABLE events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    timestamp       TIMESTAMPTZ NOT NULL,
    logged          TEXT        NOT NULL,
    server          TEXT        NOT NULL,
    service         TEXT        NOT NULL,
    ip              INET        NOT NULL,
    username        TEXT        NOT NULL,
    mechanism       TEXT        NOT NULL,
    reason          TEXT        NOT NULL,
    client_hostname TEXT        NOT NULL,
    reverse_dns     TEXT        NOT NULL,
    dns_status      TEXT        NOT NULL,
    country         TEXT        NOT NULL,
    asn             BIGINT,
    as_org          TEXT        NOT NULL
);
CREATE INDEX events_timestamp ON events (timestamp);
CREATE INDEX events_server ON events (server, timestamp);

CREATE TABLE logins (LIKE events INCLUDING ALL);
-- (LIKE copies the identity column and the indexes, named after the new table.)

-- Where each daemon's reading stopped in each log file (by fingerprint: the xxh3 of its first
-- line, as the signed 64-bit integer with the same bits).
CREATE TABLE file_positions (
    instance    TEXT    NOT NULL,
    fingerprint BIGINT  NOT NULL,
    path        TEXT    NOT NULL,
    position    BIGINT  NOT NULL,
    unseen_secs BIGINT  NOT NULL,
    complete    BOOLEAN NOT NULL,
    PRIMARY KEY (instance, fingerprint)
);

-- Where each daemon's reading stopped in each journal.
CREATE TABLE journal_positions (
    instance      TEXT   NOT NULL,
    source        TEXT   NOT NULL,
    cursor        TEXT   NOT NULL,
    realtime_usec BIGINT NOT NULL,
    PRIMARY KEY (instance, source)
);

-- One row per daemon once its positions were first saved: without it, a first start. `token`
-- names the last commit, so that a daemon whose connection broke during COMMIT can tell
-- whether it landed.
CREATE TABLE progress (
    instance TEXT PRIMARY KEY,
    saved_at TIMESTAMPTZ NOT NULL,
    token    BIGINT      NOT NULL DEFAULT 0
);
