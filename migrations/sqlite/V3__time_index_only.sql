-- Version 3: the intrusion record indexed by time alone. The (server, time) index of version 1
-- served per-server reports (`report --server`); they now read the window by the time index
-- (every server's rows of that window) and keep that server's. The index cost every insert a
-- second B-tree insert (docs/benchmarks.md, "Stores").
DROP INDEX IF EXISTS events_server;
