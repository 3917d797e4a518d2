-- hallpass incidents schema, version 1 (SQLite). Times are milliseconds since
-- the Unix epoch (UTC). Keep in step with 0001_postgres.sql.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    reference  TEXT    NOT NULL UNIQUE,  -- replays are stored once
    time_ms    INTEGER NOT NULL,
    client_ip  TEXT    NOT NULL,
    who        TEXT,
    grp        TEXT    NOT NULL,
    band       TEXT    NOT NULL,
    method     TEXT    NOT NULL,
    url        TEXT    NOT NULL,
    category   TEXT,
    rule       TEXT,
    kind       TEXT    NOT NULL
);
CREATE INDEX events_time ON events (time_ms);
CREATE INDEX events_who_time ON events (who, time_ms);

CREATE TABLE auth_failures (
    id         INTEGER PRIMARY KEY,
    time_ms    INTEGER NOT NULL,
    client_ip  TEXT    NOT NULL,
    who        TEXT    NOT NULL,          -- '' when no account was sent
    UNIQUE (time_ms, client_ip, who)
);

CREATE TABLE incidents (
    -- AUTOINCREMENT: a deleted incident's number is never given to another.
    number          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL,
    urgency         TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    reported_by     TEXT    NOT NULL,
    reported_to     TEXT    NOT NULL,
    opened_ms       INTEGER NOT NULL,
    description     TEXT    NOT NULL,
    category        TEXT,
    url             TEXT,
    subject_who     TEXT,
    subject_group   TEXT    NOT NULL,
    subject_ip      TEXT,
    identifiable    INTEGER NOT NULL,
    dedup_key       TEXT    NOT NULL,
    review_date_ms  INTEGER,
    review_result   TEXT,
    actions         TEXT    NOT NULL DEFAULT '',
    outcome         TEXT,
    principal_by    TEXT,
    principal_ms    INTEGER,
    governor_by     TEXT,
    governor_ms     INTEGER,
    revision        INTEGER NOT NULL DEFAULT 0,
    updated_ms      INTEGER NOT NULL
);
CREATE INDEX incidents_opened ON incidents (opened_ms);
CREATE INDEX incidents_dedup ON incidents (dedup_key, state, opened_ms);

CREATE TABLE incident_events (
    id         INTEGER PRIMARY KEY,
    number     INTEGER NOT NULL,
    reference  TEXT    NOT NULL,
    UNIQUE (number, reference)
);
CREATE INDEX incident_events_reference ON incident_events (reference);

CREATE TABLE audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    number   INTEGER NOT NULL,  -- no foreign key: the trail outlives a deleted incident
    at_ms    INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    role     TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    detail   TEXT    NOT NULL
);
CREATE INDEX audit_number ON audit (number, id);
