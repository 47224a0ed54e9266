-- Version 4: the records indexed by time alone, and the servers that have rows listed apart.
--
-- The (server, time) indexes of version 1 cost every inserted row a B-tree insert keyed by a
-- text and a time: a third of the server's work in a backfill (docs/benchmarks.md, "Stores").
-- A server's window is read by the time index and that server's rows kept (the window holds
-- every server's rows for that time: N servers, N times what one wrote).
--
-- What the (server, time) index also answered fast was whether a server has rows at all (a
-- new fleet member back-fills its history, a known one does not): `servers` answers that now,
-- one row per server, written in the transaction that commits its first rows.
CREATE TABLE servers (
    server TEXT PRIMARY KEY
);
INSERT INTO servers SELECT DISTINCT server FROM events;
DROP INDEX IF EXISTS events_server;
DROP INDEX IF EXISTS logins_server_timestamp_idx;
