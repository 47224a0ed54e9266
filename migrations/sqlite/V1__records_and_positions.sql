-- maillogsentinel's SQLite store, version 1: the intrusion record, the logins record and the
-- source positions they account for (committed in one transaction with them).
--
-- Columns are the CSV's, with the time twice: `timestamp` (seconds since the epoch: SQLite has
-- no time type) for windows and indexes, `logged` as logged (RFC 3339 with the log's offset and
-- sub-seconds, the CSV's `timestamp`). Text is
-- stored as the client sent it: escaping is for each output (CSV, HTML, terminal), not here.
-- `ip_key` is the address as bytes that sort as PostgreSQL's inet does (IPv4 before IPv6, each
-- in numeric order): a family byte (4 or 6) and the address's bytes.

-- Indexed for what the program asks: windows of time (reports, the alerts' memory), and a
-- server's windows (a fleet's reports). Not by address or username: each is a random insert
-- per row, and together they made a backfill 1.9x slower (docs/benchmarks.md); add them if
-- you query by them often (CREATE INDEX ... ON events (ip)).
CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    timestamp       INTEGER NOT NULL,
    logged          TEXT    NOT NULL,
    server          TEXT    NOT NULL,
    service         TEXT    NOT NULL,
    ip              TEXT    NOT NULL,
    ip_key          BLOB    NOT NULL,
    username        TEXT    NOT NULL,
    mechanism       TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    client_hostname TEXT    NOT NULL,
    reverse_dns     TEXT    NOT NULL,
    dns_status      TEXT    NOT NULL,
    country         TEXT    NOT NULL,
    asn             INTEGER,
    as_org          TEXT    NOT NULL
);
CREATE INDEX events_ts ON events (timestamp);
CREATE INDEX events_server ON events (server, timestamp);

CREATE TABLE logins (
    id              INTEGER PRIMARY KEY,
    timestamp       INTEGER NOT NULL,
    logged          TEXT    NOT NULL,
    server          TEXT    NOT NULL,
    service         TEXT    NOT NULL,
    ip              TEXT    NOT NULL,
    ip_key          BLOB    NOT NULL,
    username        TEXT    NOT NULL,
    mechanism       TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    client_hostname TEXT    NOT NULL,
    reverse_dns     TEXT    NOT NULL,
    dns_status      TEXT    NOT NULL,
    country         TEXT    NOT NULL,
    asn             INTEGER,
    as_org          TEXT    NOT NULL
);
CREATE INDEX logins_ts ON logins (timestamp);

-- Where reading stopped in each log file (by fingerprint: the xxh3 of its first line, stored
-- as the signed 64-bit integer with the same bits).
CREATE TABLE file_positions (
    fingerprint INTEGER PRIMARY KEY,
    path        TEXT    NOT NULL,
    position    INTEGER NOT NULL,
    unseen_secs INTEGER NOT NULL,
    complete    INTEGER NOT NULL
);

-- Where reading stopped in each journal.
CREATE TABLE journal_positions (
    source        TEXT PRIMARY KEY,
    cursor        TEXT    NOT NULL,
    realtime_usec INTEGER NOT NULL
);

-- One row once positions were first saved: a database without it is a first start.
CREATE TABLE progress (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    saved_at INTEGER NOT NULL
);
