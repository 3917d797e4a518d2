-- Alerts: every urgent incident gets a row here when it is opened (by the
-- trigger, so no insert path can forget it); the alerter delivers it and keeps
-- its state and last error, visible on the incident.
CREATE TABLE alerts (
    number      INTEGER PRIMARY KEY,
    state       TEXT    NOT NULL,             -- pending | sent | failed
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    next_ms     INTEGER NOT NULL DEFAULT 0,   -- the next attempt, while pending
    sent_ms     INTEGER,
    delivered   TEXT    NOT NULL DEFAULT ''   -- channels done: webhook,email
);
CREATE INDEX alerts_due ON alerts (state, next_ms);
CREATE TRIGGER incidents_alert AFTER INSERT ON incidents
WHEN NEW.urgency = 'urgent'
BEGIN
    INSERT INTO alerts (number, state) VALUES (NEW.number, 'pending');
END;
-- Foreign keys are off in SQLite unless asked for: a deleted incident takes its
-- alert with it here instead.
CREATE TRIGGER incidents_alert_deleted AFTER DELETE ON incidents
BEGIN
    DELETE FROM alerts WHERE number = OLD.number;
END;
