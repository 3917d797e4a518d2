-- hallpass incidents schema, version 1 (PostgreSQL). Times are milliseconds
-- since the Unix epoch (UTC). Keep in step with 0001_sqlite.sql.
CREATE TABLE events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reference  TEXT   NOT NULL UNIQUE,  -- replays are stored once
    time_ms    BIGINT NOT NULL,
    client_ip  TEXT   NOT NULL,
    who        TEXT,
    grp        TEXT   NOT NULL,
    band       TEXT   NOT NULL,
    method     TEXT   NOT NULL,
    url        TEXT   NOT NULL,
    category   TEXT,
    rule       TEXT,
    kind       TEXT   NOT NULL
);
CREATE INDEX events_time ON events (time_ms);
CREATE INDEX events_who_time ON events (who, time_ms);

CREATE TABLE auth_failures (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time_ms    BIGINT NOT NULL,
    client_ip  TEXT   NOT NULL,
    who        TEXT   NOT NULL,          -- '' when no account was sent
    UNIQUE (time_ms, client_ip, who)
);

CREATE TABLE incidents (
    -- An identity never hands out a deleted incident's number again.
    number          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            TEXT    NOT NULL,
    urgency         TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    reported_by     TEXT    NOT NULL,
    reported_to     TEXT    NOT NULL,
    opened_ms       BIGINT  NOT NULL,
    description     TEXT    NOT NULL,
    category        TEXT,
    url             TEXT,
    subject_who     TEXT,
    subject_group   TEXT    NOT NULL,
    subject_ip      TEXT,
    identifiable    BOOLEAN NOT NULL,
    dedup_key       TEXT    NOT NULL,
    review_date_ms  BIGINT,
    review_result   TEXT,
    actions         TEXT    NOT NULL DEFAULT '',
    outcome         TEXT,
    principal_by    TEXT,
    principal_ms    BIGINT,
    governor_by     TEXT,
    governor_ms     BIGINT,
    revision        BIGINT  NOT NULL DEFAULT 0,
    updated_ms      BIGINT  NOT NULL
);
CREATE INDEX incidents_opened ON incidents (opened_ms);
CREATE INDEX incidents_dedup ON incidents (dedup_key, state, opened_ms);

CREATE TABLE incident_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number     BIGINT NOT NULL,
    reference  TEXT   NOT NULL,
    UNIQUE (number, reference)
);
CREATE INDEX incident_events_reference ON incident_events (reference);

CREATE TABLE audit (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number   BIGINT NOT NULL,  -- no foreign key: the trail outlives a deleted incident
    at_ms    BIGINT NOT NULL,
    actor    TEXT   NOT NULL,
    role     TEXT   NOT NULL,
    action   TEXT   NOT NULL,
    detail   TEXT   NOT NULL
);
CREATE INDEX audit_number ON audit (number, id);
