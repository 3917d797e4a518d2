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
    BLOCK_COUNTS_SQL, CLOSURES_SQL, FILTER_CHECK_COLUMNS, FILTER_RESULT_COLUMNS, OPENED_COUNTS_SQL,
    RawFilterCheck, RawFilterCheckResult, with_placeholders,
};
use super::{
    EVENT_COLUMNS, Engine, Fresh, INCIDENT_COLUMNS, MIGRATIONS, Migration, RawEvent, RawIncident,
    RecordStats, actions_text, from_db, pending, to_db,
};
use crate::alert::AlertStatus;
use crate::error::Error;
use crate::model::{
    AuditEntry, AuthFailure, EventFilter, Incident, IncidentFilter, NewIncident, push_ip,
};
use crate::reporting::{
    BlockCount, Closure, FilterCheck, FilterCheckResult, KindCount, NewFilterCheck,
};

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
        // 8 MiB of page cache (the default is 2 MiB). This cache lives in the
        // proxy's own memory, beside the lists: 64 MiB took the proxy from
        // ~36 MB to ~90 MB resident after a burst of blocks, for no measurable
        // gain in insert rate (the reference and time indexes append at their
        // ends).
        conn.pragma_update(None, "cache_size", -8_192)?;
        let mut engine = SqliteEngine { conn };
        engine.migrate(MIGRATIONS)?;
        Ok(engine)
    }

    /// Applies every migration of `migrations` the database has not recorded.
    pub(crate) fn migrate(&mut self, migrations: &[Migration]) -> Result<(), Error> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
        )?;
        let recorded: Vec<u32> = tx
            .prepare("SELECT version FROM schema_version ORDER BY version")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for m in pending(migrations, &recorded)? {
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

fn raw_filter_check(r: &Row<'_>) -> rusqlite::Result<RawFilterCheck> {
    Ok(RawFilterCheck {
        id: r.get(0)?,
        started_ms: r.get(1)?,
        finished_ms: r.get(2)?,
        ran_by: r.get(3)?,
        proxy: r.get(4)?,
        suite: r.get(5)?,
        policy: r.get(6)?,
        probes: r.get(7)?,
        failures: r.get(8)?,
        under_blocked: r.get(9)?,
        over_blocked: r.get(10)?,
        errors: r.get(11)?,
        passed: r.get(12)?,
    })
}

fn count(n: i64) -> u64 {
    from_db(n)
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
            let mut ip = String::with_capacity(45);
            for ev in events {
                ip.clear();
                push_ip(&mut ip, ev.client_ip);
                let n = ins.execute(params![
                    ev.reference,
                    to_db(ev.time_ms),
                    ip,
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

    fn due_alerts(&mut self, now_ms: u64, limit: usize) -> Result<Vec<u64>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT number FROM alerts WHERE state = 'pending' AND next_ms <= ?1 ORDER BY number LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![to_db(now_ms), limit], |r| r.get::<_, i64>(0))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(from_db(r?));
        }
        Ok(out)
    }

    fn alert_status(&mut self, number: u64) -> Result<Option<AlertStatus>, Error> {
        let raw = self
            .conn
            .query_row(
                "SELECT state, attempts, last_error, next_ms, sent_ms, delivered FROM alerts WHERE number = ?1",
                [to_db(number)],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                },
            )
            .optional()?;
        raw.map(
            |(state, attempts, last_error, next_ms, sent_ms, delivered)| {
                AlertStatus::from_db(&state, attempts, last_error, next_ms, sent_ms, &delivered)
            },
        )
        .transpose()
    }

    fn save_alert(&mut self, number: u64, status: &AlertStatus) -> Result<(), Error> {
        self.conn.execute(
            "UPDATE alerts SET state = ?2, attempts = ?3, last_error = ?4, next_ms = ?5, sent_ms = ?6, delivered = ?7 WHERE number = ?1",
            params![
                to_db(number),
                status.state.as_str(),
                i64::from(status.attempts),
                status.last_error,
                to_db(status.next_ms),
                status.sent_ms.map(to_db),
                status.delivered_db(),
            ],
        )?;
        Ok(())
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

    fn record_filter_check(&mut self, c: &NewFilterCheck) -> Result<u64, Error> {
        let tx = self.conn.transaction()?;
        let id: i64 = tx.query_row(
            "INSERT INTO filter_checks (started_ms, finished_ms, ran_by, proxy, suite, policy, probes, \
             failures, under_blocked, over_blocked, errors, passed) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id",
            params![
                to_db(c.started_ms),
                to_db(c.finished_ms),
                c.ran_by,
                c.proxy,
                c.suite,
                c.policy,
                to_db(c.probes),
                to_db(c.failures),
                to_db(c.under_blocked),
                to_db(c.over_blocked),
                to_db(c.errors),
                c.passed,
            ],
            |r| r.get(0),
        )?;
        {
            let mut ins = tx.prepare_cached(&format!(
                "INSERT INTO filter_check_results (check_id, {FILTER_RESULT_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))?;
            for r in &c.results {
                ins.execute(params![
                    id, r.group, r.band, r.kind, r.category, r.url, r.expected, r.outcome,
                    r.status, r.pass, r.detail
                ])?;
            }
        }
        tx.commit()?;
        Ok(from_db(id))
    }

    fn filter_checks(
        &mut self,
        since_ms: u64,
        until_ms: u64,
        limit: u64,
    ) -> Result<Vec<FilterCheck>, Error> {
        let sql = format!(
            "SELECT {FILTER_CHECK_COLUMNS} FROM filter_checks WHERE started_ms >= ?1 AND started_ms < ?2 \
             ORDER BY started_ms DESC, id DESC LIMIT ?3"
        );
        let rows = self
            .conn
            .prepare_cached(&sql)?
            .query_map(
                params![to_db(since_ms), to_db(until_ms), to_db(limit)],
                raw_filter_check,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows.into_iter().map(RawFilterCheck::into_check).collect())
    }

    fn filter_check_by_id(&mut self, id: u64) -> Result<Option<FilterCheck>, Error> {
        let sql = format!("SELECT {FILTER_CHECK_COLUMNS} FROM filter_checks WHERE id = ?1");
        let raw = self
            .conn
            .prepare_cached(&sql)?
            .query_row([to_db(id)], raw_filter_check)
            .optional()?;
        Ok(raw.map(RawFilterCheck::into_check))
    }

    fn filter_check_results(&mut self, id: u64) -> Result<Vec<FilterCheckResult>, Error> {
        let sql = format!(
            "SELECT {FILTER_RESULT_COLUMNS} FROM filter_check_results WHERE check_id = ?1 ORDER BY id"
        );
        let rows = self
            .conn
            .prepare_cached(&sql)?
            .query_map([to_db(id)], |r| {
                Ok(RawFilterCheckResult {
                    group: r.get(0)?,
                    band: r.get(1)?,
                    kind: r.get(2)?,
                    category: r.get(3)?,
                    url: r.get(4)?,
                    expected: r.get(5)?,
                    outcome: r.get(6)?,
                    status: r.get(7)?,
                    pass: r.get(8)?,
                    detail: r.get(9)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .into_iter()
            .map(RawFilterCheckResult::into_result)
            .collect())
    }

    fn block_counts(&mut self, since_ms: u64, until_ms: u64) -> Result<Vec<BlockCount>, Error> {
        let sql = with_placeholders(BLOCK_COUNTS_SQL, '?');
        let rows = self
            .conn
            .prepare_cached(&sql)?
            .query_map(params![to_db(since_ms), to_db(until_ms)], |r| {
                Ok(BlockCount {
                    group: r.get(0)?,
                    category: r.get(1)?,
                    count: count(r.get(2)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn opened_counts(&mut self, since_ms: u64, until_ms: u64) -> Result<Vec<KindCount>, Error> {
        let sql = with_placeholders(OPENED_COUNTS_SQL, '?');
        let rows = self
            .conn
            .prepare_cached(&sql)?
            .query_map(params![to_db(since_ms), to_db(until_ms)], |r| {
                Ok(KindCount {
                    kind: r.get(0)?,
                    count: count(r.get(1)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn closures(&mut self, since_ms: u64, until_ms: u64) -> Result<Vec<Closure>, Error> {
        let sql = with_placeholders(CLOSURES_SQL, '?');
        let rows = self
            .conn
            .prepare_cached(&sql)?
            .query_map(params![to_db(since_ms), to_db(until_ms)], |r| {
                Ok(Closure {
                    number: from_db(r.get(0)?),
                    kind: r.get(1)?,
                    opened_ms: from_db(r.get(2)?),
                    closed_ms: from_db(r.get(3)?),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
