-- hallpass incidents schema, version 3 (SQLite): filter-check runs and their
-- probe results. Keep in step with 0003_postgres.sql.
CREATE TABLE filter_checks (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    started_ms     INTEGER NOT NULL,
    finished_ms    INTEGER NOT NULL,
    ran_by         TEXT    NOT NULL,
    proxy          TEXT    NOT NULL,  -- the proxy address probed
    suite          TEXT    NOT NULL,  -- the probe suite file
    policy         TEXT    NOT NULL,  -- the policy file it was judged against
    probes         INTEGER NOT NULL,
    failures       INTEGER NOT NULL,
    under_blocked  INTEGER NOT NULL,  -- must-block probes that got through
    over_blocked   INTEGER NOT NULL,  -- must-allow probes that were blocked
    errors         INTEGER NOT NULL,  -- probes with no verdict (login refused, no answer)
    passed         INTEGER NOT NULL
);
CREATE INDEX filter_checks_started ON filter_checks (started_ms);

CREATE TABLE filter_check_results (
    id        INTEGER PRIMARY KEY,
    check_id  INTEGER NOT NULL REFERENCES filter_checks (id) ON DELETE CASCADE,
    grp       TEXT    NOT NULL,
    band      TEXT    NOT NULL,
    kind      TEXT    NOT NULL,  -- block, allow, baseline, safe-search
    category  TEXT    NOT NULL,  -- the category, or the must-allow label
    url       TEXT    NOT NULL,
    expected  TEXT    NOT NULL,
    outcome   TEXT    NOT NULL,
    status    INTEGER,
    pass      INTEGER NOT NULL,
    detail    TEXT    NOT NULL
);
CREATE INDEX filter_check_results_check ON filter_check_results (check_id, id);
