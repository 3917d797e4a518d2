-- hallpass incidents schema, version 4 (PostgreSQL): nothing changes here.
-- SQLite drops events_who_time in its version 4 because its planner never uses
-- it; PostgreSQL plans each Store::events query with the account it is given,
-- so `($3::text IS NULL OR who = $3)` folds to `who = $3` and the index serves
-- an account's blocks without scanning the period. It stays. Keep in step with
-- 0004_sqlite.sql.
SELECT 1;
