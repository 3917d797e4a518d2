-- hallpass incidents schema, version 4 (SQLite): the (who, time_ms) index on
-- events goes. SQLite never reads it: the one query that filters on `who`
-- (Store::events) says `(?3 IS NULL OR who = ?3)`, which its planner cannot
-- match to an index, and searches events_time instead (EXPLAIN QUERY PLAN, with
-- and without an account). It was pure cost: one more B-tree insert per block
-- event, at a random place (pupils' names, not time), so each transaction
-- dirtied, wrote to the WAL and checkpointed a page of it for nearly every
-- event. Keep in step with 0004_postgres.sql.
DROP INDEX IF EXISTS events_who_time;
