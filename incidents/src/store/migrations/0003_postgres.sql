-- hallpass incidents schema, version 3 (PostgreSQL): filter-check runs and
-- their probe results. Keep in step with 0003_sqlite.sql.
CREATE TABLE filter_checks (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_ms     BIGINT  NOT NULL,
    finished_ms    BIGINT  NOT NULL,
    ran_by         TEXT    NOT NULL,
    proxy          TEXT    NOT NULL,  -- the proxy address probed
    suite          TEXT    NOT NULL,  -- the probe suite file
    policy         TEXT    NOT NULL,  -- the policy file it was judged against
    probes         BIGINT  NOT NULL,
    failures       BIGINT  NOT NULL,
    under_blocked  BIGINT  NOT NULL,  -- must-block probes that got through
    over_blocked   BIGINT  NOT NULL,  -- must-allow probes that were blocked
    errors         BIGINT  NOT NULL,  -- probes with no verdict (login refused, no answer)
    passed         BOOLEAN NOT NULL
);
CREATE INDEX filter_checks_started ON filter_checks (started_ms);

CREATE TABLE filter_check_results (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    check_id  BIGINT  NOT NULL REFERENCES filter_checks (id) ON DELETE CASCADE,
    grp       TEXT    NOT NULL,
    band      TEXT    NOT NULL,
    kind      TEXT    NOT NULL,  -- block, allow, baseline, safe-search
    category  TEXT    NOT NULL,  -- the category, or the must-allow label
    url       TEXT    NOT NULL,
    expected  TEXT    NOT NULL,
    outcome   TEXT    NOT NULL,
    status    INTEGER,
    pass      BOOLEAN NOT NULL,
    detail    TEXT    NOT NULL
);
CREATE INDEX filter_check_results_check ON filter_check_results (check_id, id);
