-- Version 3: the intrusion record indexed by time alone. The (server, time) index of version 1
-- served a fleet's per-server reports, but a fleet writes PostgreSQL: a SQLite store holds one
-- server's rows (and those imported beside them), so `report --server` reads the window by
-- the time index and keeps that server's rows. The index cost every insert a second random
-- B-tree insert (docs/benchmarks.md, "Stores").
DROP INDEX IF EXISTS events_server;
