//! The SQLite engine: one file in the state directory, WAL mode.
//!
//! WAL lets the CLI and the console read while the writer commits, and
//! `synchronous = FULL` makes every acknowledged batch durable across a power
//! cut, not just a crash (the block page goes out only after the commit).
//! `busy_timeout` makes a second process wait for the lock instead of failing.
use std::path::Path;
use std::time::Duration;

use policy::event::BlockEvent;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    EVENT_COLUMNS, Engine, Fresh, INCIDENT_COLUMNS, MIGRATIONS, RawEvent, RawIncident, RecordStats,
    SCHEMA_VERSION, actions_text, from_db, to_db,
};
use crate::error::Error;
use crate::model::{AuditEntry, AuthFailure, EventFilter, Incident, IncidentFilter, NewIncident};

pub(crate) struct SqliteEngine {
    conn: Connection,
}

impl SqliteEngine {
    pub(crate) fn open(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Schema(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // 64 MiB of page cache (the default is 2 MiB): the reference and
        // (who, time) indexes take inserts at random places, and a year of
        // events outgrows a small cache quickly.
        conn.pragma_update(None, "cache_size", -65_536)?;
        let mut engine = SqliteEngine { conn };
        engine.migrate()?;
        Ok(engine)
    }

    fn migrate(&mut self) -> Result<(), Error> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
        )?;
        let current: u32 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )?;
        if current > SCHEMA_VERSION {
            return Err(Error::Schema(format!(
                "the database is at schema version {current}, this build knows up to {SCHEMA_VERSION}: upgrade hallpass"
            )));
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            tx.execute_batch(m.sqlite)?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_ms) VALUES (?1, strftime('%s','now') * 1000)",
                [m.version],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn raw_event(r: &Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok(RawEvent {
        reference: r.get(0)?,
        time_ms: r.get(1)?,
        client_ip: r.get(2)?,
        who: r.get(3)?,
        group: r.get(4)?,
        band: r.get(5)?,
        method: r.get(6)?,
        url: r.get(7)?,
        category: r.get(8)?,
        rule: r.get(9)?,
        kind: r.get(10)?,
    })
}

fn raw_incident(r: &Row<'_>) -> rusqlite::Result<RawIncident> {
    Ok(RawIncident {
        number: r.get(0)?,
        kind: r.get(1)?,
        urgency: r.get(2)?,
        state: r.get(3)?,
        reported_by: r.get(4)?,
        reported_to: r.get(5)?,
        opened_ms: r.get(6)?,
        description: r.get(7)?,
        category: r.get(8)?,
        url: r.get(9)?,
        subject_who: r.get(10)?,
        subject_group: r.get(11)?,
        subject_ip: r.get(12)?,
        identifiable: r.get(13)?,
        review_date_ms: r.get(14)?,
        review_result: r.get(15)?,
        actions: r.get(16)?,
        outcome: r.get(17)?,
        principal_by: r.get(18)?,
        principal_ms: r.get(19)?,
        governor_by: r.get(20)?,
        governor_ms: r.get(21)?,
        revision: r.get(22)?,
        updated_ms: r.get(23)?,
    })
}

fn references(conn: &Connection, number: i64) -> Result<Vec<String>, Error> {
    let mut st =
        conn.prepare_cached("SELECT reference FROM incident_events WHERE number = ?1 ORDER BY id")?;
    let refs = st
        .query_map([number], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(refs)
}

fn insert_audit(conn: &Connection, entries: &[AuditEntry]) -> Result<(), Error> {
    let mut st = conn.prepare_cached(
        "INSERT INTO audit (number, at_ms, actor, role, action, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for a in entries {
        st.execute(params![
            to_db(a.number),
            to_db(a.at_ms),
            a.actor,
            a.role,
            a.action,
            a.detail
        ])?;
    }
    Ok(())
}

/// Opens an incident or adds its events to a matching `new` one (same dedup key,
/// opened within the coalescing window). Runs inside the caller's transaction.
fn open_in(
    conn: &Connection,
    new: &NewIncident,
    now_ms: u64,
    coalesce_ms: u64,
) -> Result<(u64, bool), Error> {
    let existing: Option<i64> = if coalesce_ms > 0 {
        conn.prepare_cached(
            "SELECT number FROM incidents WHERE dedup_key = ?1 AND state = 'new' AND opened_ms >= ?2 \
             ORDER BY number DESC LIMIT 1",
        )?
        .query_row(params![new.dedup_key, to_db(new.time_ms.saturating_sub(coalesce_ms))], |r| r.get(0))
        .optional()?
    } else {
        None
    };
    let (number, opened) = match existing {
        Some(n) => (n, false),
        None => {
            let n: i64 = conn
                .prepare_cached(
                    "INSERT INTO incidents (kind, urgency, state, reported_by, reported_to, opened_ms, description, \
                     category, url, subject_who, subject_group, subject_ip, identifiable, dedup_key, updated_ms) \
                     VALUES (?1, ?2, 'new', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) RETURNING number",
                )?
                .query_row(
                    params![
                        new.kind.as_str(),
                        new.urgency.as_str(),
                        new.reported_by,
                        new.reported_to,
                        to_db(new.time_ms),
                        new.description,
                        new.category,
                        new.url,
                        new.subject.who,
                        new.subject.group,
                        new.subject.ip,
                        new.subject.identifiable,
                        new.dedup_key,
                        to_db(now_ms),
                    ],
                    |r| r.get(0),
                )?;
            insert_audit(
                conn,
                &[AuditEntry {
                    number: from_db(n),
                    at_ms: now_ms,
                    actor: new.reported_by.clone(),
                    role: "system".into(),
                    action: "opened".into(),
                    detail: format!(
                        "{} {} incident for {}",
                        new.urgency, new.kind, new.reported_to
                    ),
                }],
            )?;
            (n, true)
        }
    };
    let mut link = conn.prepare_cached(
        "INSERT OR IGNORE INTO incident_events (number, reference) VALUES (?1, ?2)",
    )?;
    for r in &new.references {
        link.execute(params![number, r])?;
    }
    Ok((from_db(number), opened))
}

impl Engine for SqliteEngine {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn schema_version(&mut self) -> Result<u32, Error> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )?)
    }

    fn record(
        &mut self,
        events: &[BlockEvent],
        auth: &[AuthFailure],
        decide: &mut dyn FnMut(Fresh<'_>) -> Vec<NewIncident>,
        now_ms: u64,
        coalesce_ms: u64,
    ) -> Result<RecordStats, Error> {
        let tx = self.conn.transaction()?;
        let mut stats = RecordStats::default();
        let mut opened = Vec::new();
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (reference, time_ms, client_ip, who, grp, band, method, url, category, rule, kind) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for ev in events {
                let n = ins.execute(params![
                    ev.reference,
                    to_db(ev.time_ms),
                    ev.client_ip.to_string(),
                    ev.who,
                    ev.group,
                    ev.band,
                    ev.method,
                    ev.url,
                    ev.category,
                    ev.rule,
                    ev.kind.as_str(),
                ])?;
                if n == 1 {
                    stats.events += 1;
                    opened.extend(decide(Fresh::Event(ev)));
                }
            }
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO auth_failures (time_ms, client_ip, who) VALUES (?1, ?2, ?3)",
            )?;
            for f in auth {
                let who = f.who.as_deref().unwrap_or("");
                if ins.execute(params![to_db(f.time_ms), f.client_ip.to_string(), who])? == 1 {
                    stats.auth_failures += 1;
                    opened.extend(decide(Fresh::Auth(f)));
                }
            }
        }
        for new in &opened {
            if open_in(&tx, new, now_ms, coalesce_ms)?.1 {
                stats.incidents_opened += 1;
            }
        }
        tx.commit()?;
        Ok(stats)
    }

    fn events(&mut self, f: &EventFilter) -> Result<Vec<BlockEvent>, Error> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE time_ms >= ?1 AND time_ms < ?2 \
             AND (?3 IS NULL OR who = ?3) AND (?4 IS NULL OR category = ?4) ORDER BY time_ms, id LIMIT ?5"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let limit = f
            .limit
            .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = st.query_map(
            params![
                to_db(f.since_ms.unwrap_or(0)),
                f.until_ms.map_or(i64::MAX, to_db),
                f.who,
                f.category,
                limit
            ],
            raw_event,
        )?;
        rows.map(|r| r.map_err(Error::from).and_then(RawEvent::into_event))
            .collect()
    }

    fn incident_events(&mut self, number: u64) -> Result<Vec<BlockEvent>, Error> {
        let cols = EVENT_COLUMNS
            .split(", ")
            .map(|c| format!("e.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {cols} FROM events e JOIN incident_events ie ON ie.reference = e.reference \
             WHERE ie.number = ?1 ORDER BY e.time_ms, e.id"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map([to_db(number)], raw_event)?;
        rows.map(|r| r.map_err(Error::from).and_then(RawEvent::into_event))
            .collect()
    }

    fn open_incident(
        &mut self,
        new: &NewIncident,
        now_ms: u64,
        coalesce_ms: u64,
    ) -> Result<(u64, bool), Error> {
        let tx = self.conn.transaction()?;
        let out = open_in(&tx, new, now_ms, coalesce_ms)?;
        tx.commit()?;
        Ok(out)
    }

    fn incident(&mut self, number: u64) -> Result<Option<Incident>, Error> {
        let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE number = ?1");
        let raw = self
            .conn
            .prepare_cached(&sql)?
            .query_row([to_db(number)], raw_incident)
            .optional()?;
        match raw {
            None => Ok(None),
            Some(raw) => {
                let refs = references(&self.conn, raw.number)?;
                raw.into_incident(refs).map(Some)
            }
        }
    }

    fn incidents(&mut self, f: &IncidentFilter) -> Result<Vec<Incident>, Error> {
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE (?1 IS NULL OR state = ?1) \
             AND (?2 IS NULL OR kind = ?2) AND opened_ms >= ?3 ORDER BY number DESC"
        );
        let raws = self
            .conn
            .prepare_cached(&sql)?
            .query_map(
                params![
                    f.state.map(|s| s.as_str()),
                    f.kind.map(|k| k.as_str()),
                    to_db(f.since_ms.unwrap_or(0))
                ],
                raw_incident,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        raws.into_iter()
            .map(|raw| {
                let refs = references(&self.conn, raw.number)?;
                raw.into_incident(refs)
            })
            .collect()
    }

    fn save(&mut self, i: &Incident, audit: &[AuditEntry]) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        let changed = tx.prepare_cached(
            "UPDATE incidents SET state = ?1, review_date_ms = ?2, review_result = ?3, actions = ?4, outcome = ?5, \
             principal_by = ?6, principal_ms = ?7, governor_by = ?8, governor_ms = ?9, updated_ms = ?10, \
             revision = revision + 1 WHERE number = ?11 AND revision = ?12",
        )?
        .execute(params![
            i.state.as_str(),
            i.review_date_ms.map(to_db),
            i.review_result,
            actions_text(i),
            i.outcome,
            i.principal_signoff.as_ref().map(|s| s.by.clone()),
            i.principal_signoff.as_ref().map(|s| to_db(s.at_ms)),
            i.governor_signoff.as_ref().map(|s| s.by.clone()),
            i.governor_signoff.as_ref().map(|s| to_db(s.at_ms)),
            to_db(i.updated_ms),
            to_db(i.number),
            to_db(i.revision),
        ])?;
        if changed != 1 {
            return Err(Error::Conflict(i.number));
        }
        insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(())
    }

    fn append_audit(&mut self, audit: &[AuditEntry]) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        insert_audit(&tx, audit)?;
        tx.commit()?;
        Ok(())
    }

    fn audit_trail(&mut self, number: u64) -> Result<Vec<AuditEntry>, Error> {
        let mut st = self.conn.prepare_cached(
            "SELECT number, at_ms, actor, role, action, detail FROM audit WHERE number = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([to_db(number)], |r| {
            Ok(AuditEntry {
                number: from_db(r.get(0)?),
                at_ms: from_db(r.get(1)?),
                actor: r.get(2)?,
                role: r.get(3)?,
                action: r.get(4)?,
                detail: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn delete(&mut self, number: u64, audit: &AuditEntry) -> Result<bool, Error> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM incident_events WHERE number = ?1",
            [to_db(number)],
        )?;
        let n = tx.execute("DELETE FROM incidents WHERE number = ?1", [to_db(number)])?;
        insert_audit(&tx, std::slice::from_ref(audit))?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn prune(&mut self, before_ms: u64) -> Result<u64, Error> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM events WHERE time_ms < ?1 \
             AND NOT EXISTS (SELECT 1 FROM incident_events ie WHERE ie.reference = events.reference)",
            [to_db(before_ms)],
        )?;
        tx.execute(
            "DELETE FROM auth_failures WHERE time_ms < ?1",
            [to_db(before_ms)],
        )?;
        tx.commit()?;
        Ok(n as u64)
    }
}
