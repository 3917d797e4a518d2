-- Alerts: every urgent incident gets a row here when it is opened (by the
-- trigger, so no insert path can forget it); the alerter delivers it and keeps
-- its state and last error, visible on the incident.
CREATE TABLE alerts (
    number      BIGINT  PRIMARY KEY REFERENCES incidents (number) ON DELETE CASCADE,
    state       TEXT    NOT NULL,             -- pending | sent | failed
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    next_ms     BIGINT  NOT NULL DEFAULT 0,   -- the next attempt, while pending
    sent_ms     BIGINT,
    delivered   TEXT    NOT NULL DEFAULT ''   -- channels done: webhook,email
);
CREATE INDEX alerts_due ON alerts (state, next_ms);
CREATE FUNCTION incidents_alert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.urgency = 'urgent' THEN
        INSERT INTO alerts (number, state) VALUES (NEW.number, 'pending');
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER incidents_alert AFTER INSERT ON incidents
FOR EACH ROW EXECUTE FUNCTION incidents_alert();
