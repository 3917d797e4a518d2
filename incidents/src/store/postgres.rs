//! The PostgreSQL engine: several proxies may share one database (multi-site).
//!
//! A batch of events is one `INSERT ... SELECT FROM unnest(...)` statement, so a
//! batch of 256 costs one round trip, not 256. Migrations take an advisory lock,
//! so proxies starting together do not race. Every statement has a timeout, so a
//! stalled server turns into an error (and the intake spools) rather than a hang.
use std::collections::HashMap;
use std::time::Duration;

use policy::event::BlockEvent;
use postgres::{Client, GenericClient, NoTls, Row, Statement};

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
use crate::model::{AuditEntry, AuthFailure, EventFilter, Incident, IncidentFilter, NewIncident};
use crate::reporting::{
    BlockCount, Closure, FilterCheck, FilterCheckResult, KindCount, NewFilterCheck,
};

/// How long a connection attempt may take before the intake spools instead.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest any one statement may run.
const STATEMENT_TIMEOUT: &str = "10s";
/// An arbitrary, fixed key for the migration advisory lock.
const MIGRATION_LOCK: i64 = 0x6861_6c6c_7061_7373; // "hallpass"

pub(crate) struct PostgresEngine {
    client: Client,
    /// The batch insert, prepared once per connection: it runs for every batch,
    /// and preparing it each time costs a round trip and a plan.
    insert_events: Statement,
}

const INSERT_EVENTS: &str = "INSERT INTO events (reference, time_ms, client_ip, who, grp, band, method, url, category, rule, kind) \
     SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[]) \
     ON CONFLICT (reference) DO NOTHING RETURNING reference";

impl PostgresEngine {
    pub(crate) fn connect(url: &str) -> Result<Self, Error> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::Settings(format!(
                "expected a postgres:// URL, found `{}`",
                url.split('@').next_back().unwrap_or("")
            )));
        }
        let mut config: postgres::Config = url.parse()?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("hallpass-incidents");
        let mut client = config.connect(NoTls)?;
        client.batch_execute(&format!("SET statement_timeout = '{STATEMENT_TIMEOUT}'"))?;
        migrate(&mut client, MIGRATIONS)?;
        let insert_events = client.prepare(INSERT_EVENTS)?;
        Ok(PostgresEngine {
            client,
            insert_events,
        })
    }
}

/// Applies every migration of `migrations` the database has not recorded,
/// holding the advisory lock so two processes starting at once do not both
/// apply them.
pub(crate) fn migrate(client: &mut Client, migrations: &[Migration]) -> Result<(), Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)",
    )?;
    let mut recorded = Vec::new();
    for row in tx.query("SELECT version FROM schema_version ORDER BY version", &[])? {
        let v: i32 = row.try_get(0)?;
        // A negative version was never written by hallpass: report it as
        // unknown rather than skip it.
        recorded.push(u32::try_from(v).unwrap_or(u32::MAX));
    }
    for m in pending(migrations, &recorded)? {
        tx.batch_execute(m.postgres)?;
        let v = i32::try_from(m.version)
            .map_err(|_| Error::Internal("migration version overflows".into()))?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_ms) VALUES ($1, (extract(epoch from now()) * 1000)::bigint)",
            &[&v],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn raw_event(r: &Row) -> Result<RawEvent, Error> {
    Ok(RawEvent {
        reference: r.try_get(0)?,
        time_ms: r.try_get(1)?,
        client_ip: r.try_get(2)?,
        who: r.try_get(3)?,
        group: r.try_get(4)?,
        band: r.try_get(5)?,
        method: r.try_get(6)?,
        url: r.try_get(7)?,
        category: r.try_get(8)?,
        rule: r.try_get(9)?,
        kind: r.try_get(10)?,
    })
}

fn raw_incident(r: &Row) -> Result<RawIncident, Error> {
    Ok(RawIncident {
        number: r.try_get(0)?,
        kind: r.try_get(1)?,
        urgency: r.try_get(2)?,
        state: r.try_get(3)?,
        reported_by: r.try_get(4)?,
        reported_to: r.try_get(5)?,
        opened_ms: r.try_get(6)?,
        description: r.try_get(7)?,
        category: r.try_get(8)?,
        url: r.try_get(9)?,
        subject_who: r.try_get(10)?,
        subject_group: r.try_get(11)?,
        subject_ip: r.try_get(12)?,
        identifiable: r.try_get(13)?,
        review_date_ms: r.try_get(14)?,
        review_result: r.try_get(15)?,
        actions: r.try_get(16)?,
        outcome: r.try_get(17)?,
        principal_by: r.try_get(18)?,
        principal_ms: r.try_get(19)?,
        governor_by: r.try_get(20)?,
        governor_ms: r.try_get(21)?,
        revision: r.try_get(22)?,
        updated_ms: r.try_get(23)?,
    })
}

fn raw_filter_check(r: &Row) -> Result<RawFilterCheck, Error> {
    Ok(RawFilterCheck {
        id: r.try_get(0)?,
        started_ms: r.try_get(1)?,
        finished_ms: r.try_get(2)?,
        ran_by: r.try_get(3)?,
        proxy: r.try_get(4)?,
        suite: r.try_get(5)?,
        policy: r.try_get(6)?,
        probes: r.try_get(7)?,
        failures: r.try_get(8)?,
        under_blocked: r.try_get(9)?,
        over_blocked: r.try_get(10)?,
        errors: r.try_get(11)?,
        passed: r.try_get(12)?,
    })
}

fn references(c: &mut impl GenericClient, number: i64) -> Result<Vec<String>, Error> {
    c.query(
        "SELECT reference FROM incident_events WHERE number = $1 ORDER BY id",
        &[&number],
    )?
    .iter()
    .map(|r| r.try_get(0).map_err(Error::from))
    .collect()
}

fn insert_audit(c: &mut impl GenericClient, entries: &[AuditEntry]) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let st = c.prepare(
        "INSERT INTO audit (number, at_ms, actor, role, action, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )?;
    for a in entries {
        c.execute(
            &st,
            &[
                &to_db(a.number),
                &to_db(a.at_ms),
                &a.actor,
                &a.role,
                &a.action,
                &a.detail,
            ],
        )?;
    }
    Ok(())
}

/// See the SQLite twin: opens or coalesces, inside the caller's transaction.
fn open_in(
    c: &mut impl GenericClient,
    new: &NewIncident,
    now_ms: u64,
    coalesce_ms: u64,
) -> Result<(u64, bool), Error> {
    let existing: Option<i64> = if coalesce_ms > 0 {
        c.query_opt(
            "SELECT number FROM incidents WHERE dedup_key = $1 AND state = 'new' AND opened_ms >= $2 \
             ORDER BY number DESC LIMIT 1 FOR UPDATE",
            &[&no_nul(&new.dedup_key), &to_db(new.time_ms.saturating_sub(coalesce_ms))],
        )?
        .map(|r| r.try_get(0))
        .transpose()?
    } else {
        None
    };
    let (number, opened) = match existing {
        Some(n) => (n, false),
        None => {
            let n: i64 = c
                .query_one(
                    "INSERT INTO incidents (kind, urgency, state, reported_by, reported_to, opened_ms, description, \
                     category, url, subject_who, subject_group, subject_ip, identifiable, dedup_key, updated_ms) \
                     VALUES ($1, $2, 'new', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING number",
                    &[
                        &new.kind.as_str(),
                        &new.urgency.as_str(),
                        &new.reported_by,
                        &new.reported_to,
                        &to_db(new.time_ms),
                        &no_nul(&new.description),
                        &new.category.as_deref().map(no_nul),
                        &new.url.as_deref().map(no_nul),
                        &new.subject.who.as_deref().map(no_nul),
                        &no_nul(&new.subject.group),
                        &new.subject.ip,
                        &new.subject.identifiable,
                        &no_nul(&new.dedup_key),
                        &to_db(now_ms),
                    ],
                )?
                .try_get(0)?;
            insert_audit(
                c,
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
    if !new.references.is_empty() {
        c.execute(
            "INSERT INTO incident_events (number, reference) SELECT $1, r FROM unnest($2::text[]) AS r \
             ON CONFLICT (number, reference) DO NOTHING",
            &[&number, &new.references.iter().map(|r| no_nul(r)).collect::<Vec<_>>()],
        )?;
    }
    Ok((from_db(number), opened))
}

/// PostgreSQL text cannot hold NUL; SQLite can. A NUL would make the batch fail
/// on every replay and block the spool for good, so it becomes U+FFFD here.
fn no_nul(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

impl Engine for PostgresEngine {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn schema_version(&mut self) -> Result<u32, Error> {
        let v: i32 = self
            .client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
            .try_get(0)?;
        Ok(u32::try_from(v).unwrap_or(0))
    }

    fn record(
        &mut self,
        events: &[BlockEvent],
        auth: &[AuthFailure],
        decide: &mut dyn FnMut(Fresh<'_>) -> Vec<NewIncident>,
        now_ms: u64,
        coalesce_ms: u64,
    ) -> Result<RecordStats, Error> {
        let mut tx = self.client.transaction()?;
        let mut stats = RecordStats::default();
        let mut opened = Vec::new();
        if !events.is_empty() {
            let mut cols: [Vec<Option<String>>; 9] = Default::default();
            let mut times = Vec::with_capacity(events.len());
            let mut references = Vec::with_capacity(events.len());
            for ev in events {
                references.push(no_nul(&ev.reference));
                times.push(to_db(ev.time_ms));
                let values = [
                    Some(ev.client_ip.to_string()),
                    ev.who.as_deref().map(no_nul),
                    Some(no_nul(&ev.group)),
                    Some(no_nul(&ev.band)),
                    Some(no_nul(&ev.method)),
                    Some(no_nul(&ev.url)),
                    ev.category.as_deref().map(no_nul),
                    ev.rule.as_deref().map(no_nul),
                    Some(ev.kind.as_str().to_string()),
                ];
                for (col, v) in cols.iter_mut().zip(values) {
                    col.push(v);
                }
            }
            let rows = tx.query(
                &self.insert_events,
                &[
                    &references,
                    &times,
                    &cols[0],
                    &cols[1],
                    &cols[2],
                    &cols[3],
                    &cols[4],
                    &cols[5],
                    &cols[6],
                    &cols[7],
                    &cols[8],
                ],
            )?;
            // Count how often each new reference was inserted (once), then walk
            // the batch in order so the rules see events oldest first.
            let mut fresh: HashMap<String, usize> = HashMap::with_capacity(rows.len());
            for r in &rows {
                *fresh.entry(r.try_get::<_, String>(0)?).or_default() += 1;
            }
            for ev in events {
                if let Some(n) = fresh.get_mut(&no_nul(&ev.reference))
                    && *n > 0
                {
                    *n -= 1;
                    stats.events += 1;
                    opened.extend(decide(Fresh::Event(ev)));
                }
            }
        }
        for f in auth {
            let who = no_nul(f.who.as_deref().unwrap_or(""));
            let n = tx.execute(
                "INSERT INTO auth_failures (time_ms, client_ip, who) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&to_db(f.time_ms), &f.client_ip.to_string(), &who],
            )?;
            if n == 1 {
                stats.auth_failures += 1;
                opened.extend(decide(Fresh::Auth(f)));
            }
        }
        for new in &opened {
            if open_in(&mut tx, new, now_ms, coalesce_ms)?.1 {
                stats.incidents_opened += 1;
            }
        }
        tx.commit()?;
        Ok(stats)
    }

    fn events(&mut self, f: &EventFilter) -> Result<Vec<BlockEvent>, Error> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE time_ms >= $1 AND time_ms < $2 \
             AND ($3::text IS NULL OR who = $3) AND ($4::text IS NULL OR category = $4) ORDER BY time_ms, id LIMIT $5"
        );
        let limit = f
            .limit
            .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = self.client.query(
            &sql,
            &[
                &to_db(f.since_ms.unwrap_or(0)),
                &f.until_ms.map_or(i64::MAX, to_db),
                &f.who,
                &f.category,
                &limit,
            ],
        )?;
        rows.iter().map(|r| raw_event(r)?.into_event()).collect()
    }

    fn incident_events(&mut self, number: u64) -> Result<Vec<BlockEvent>, Error> {
        let cols = EVENT_COLUMNS
            .split(", ")
            .map(|c| format!("e.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {cols} FROM events e JOIN incident_events ie ON ie.reference = e.reference \
             WHERE ie.number = $1 ORDER BY e.time_ms, e.id"
        );
        let rows = self.client.query(&sql, &[&to_db(number)])?;
        rows.iter().map(|r| raw_event(r)?.into_event()).collect()
    }

    fn open_incident(
        &mut self,
        new: &NewIncident,
        now_ms: u64,
        coalesce_ms: u64,
    ) -> Result<(u64, bool), Error> {
        let mut tx = self.client.transaction()?;
        let out = open_in(&mut tx, new, now_ms, coalesce_ms)?;
        tx.commit()?;
        Ok(out)
    }

    fn incident(&mut self, number: u64) -> Result<Option<Incident>, Error> {
        let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE number = $1");
        let Some(row) = self.client.query_opt(&sql, &[&to_db(number)])? else {
            return Ok(None);
        };
        let raw = raw_incident(&row)?;
        let refs = references(&mut self.client, raw.number)?;
        raw.into_incident(refs).map(Some)
    }

    fn incidents(&mut self, f: &IncidentFilter) -> Result<Vec<Incident>, Error> {
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE ($1::text IS NULL OR state = $1) \
             AND ($2::text IS NULL OR kind = $2) AND opened_ms >= $3 ORDER BY number DESC"
        );
        let rows = self.client.query(
            &sql,
            &[
                &f.state.map(|s| s.as_str()),
                &f.kind.map(|k| k.as_str()),
                &to_db(f.since_ms.unwrap_or(0)),
            ],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let raw = raw_incident(row)?;
            let refs = references(&mut self.client, raw.number)?;
            out.push(raw.into_incident(refs)?);
        }
        Ok(out)
    }

    fn save(&mut self, i: &Incident, audit: &[AuditEntry]) -> Result<(), Error> {
        let mut tx = self.client.transaction()?;
        let changed = tx.execute(
            "UPDATE incidents SET state = $1, review_date_ms = $2, review_result = $3, actions = $4, outcome = $5, \
             principal_by = $6, principal_ms = $7, governor_by = $8, governor_ms = $9, updated_ms = $10, \
             revision = revision + 1 WHERE number = $11 AND revision = $12",
            &[
                &i.state.as_str(),
                &i.review_date_ms.map(to_db),
                &i.review_result,
                &actions_text(i),
                &i.outcome,
                &i.principal_signoff.as_ref().map(|s| s.by.clone()),
                &i.principal_signoff.as_ref().map(|s| to_db(s.at_ms)),
                &i.governor_signoff.as_ref().map(|s| s.by.clone()),
                &i.governor_signoff.as_ref().map(|s| to_db(s.at_ms)),
                &to_db(i.updated_ms),
                &to_db(i.number),
                &to_db(i.revision),
            ],
        )?;
        if changed != 1 {
            return Err(Error::Conflict(i.number));
        }
        insert_audit(&mut tx, audit)?;
        tx.commit()?;
        Ok(())
    }

    fn append_audit(&mut self, audit: &[AuditEntry]) -> Result<(), Error> {
        let mut tx = self.client.transaction()?;
        insert_audit(&mut tx, audit)?;
        tx.commit()?;
        Ok(())
    }

    fn audit_trail(&mut self, number: u64) -> Result<Vec<AuditEntry>, Error> {
        let rows = self.client.query(
            "SELECT number, at_ms, actor, role, action, detail FROM audit WHERE number = $1 ORDER BY id",
            &[&to_db(number)],
        )?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    number: from_db(r.try_get(0)?),
                    at_ms: from_db(r.try_get(1)?),
                    actor: r.try_get(2)?,
                    role: r.try_get(3)?,
                    action: r.try_get(4)?,
                    detail: r.try_get(5)?,
                })
            })
            .collect()
    }

    fn delete(&mut self, number: u64, audit: &AuditEntry) -> Result<bool, Error> {
        let mut tx = self.client.transaction()?;
        tx.execute(
            "DELETE FROM incident_events WHERE number = $1",
            &[&to_db(number)],
        )?;
        let n = tx.execute("DELETE FROM incidents WHERE number = $1", &[&to_db(number)])?;
        insert_audit(&mut tx, std::slice::from_ref(audit))?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn due_alerts(&mut self, now_ms: u64, limit: usize) -> Result<Vec<u64>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.client.query(
            "SELECT number FROM alerts WHERE state = 'pending' AND next_ms <= $1 ORDER BY number LIMIT $2",
            &[&to_db(now_ms), &limit],
        )?;
        rows.iter()
            .map(|r| Ok(from_db(r.try_get::<_, i64>(0)?)))
            .collect()
    }

    fn alert_status(&mut self, number: u64) -> Result<Option<AlertStatus>, Error> {
        let row = self.client.query_opt(
            "SELECT state, attempts, last_error, next_ms, sent_ms, delivered FROM alerts WHERE number = $1",
            &[&to_db(number)],
        )?;
        row.map(|r| {
            AlertStatus::from_db(
                &r.try_get::<_, String>(0)?,
                i64::from(r.try_get::<_, i32>(1)?),
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                &r.try_get::<_, String>(5)?,
            )
        })
        .transpose()
    }

    fn save_alert(&mut self, number: u64, status: &AlertStatus) -> Result<(), Error> {
        let attempts = i32::try_from(status.attempts).unwrap_or(i32::MAX);
        self.client.execute(
            "UPDATE alerts SET state = $2, attempts = $3, last_error = $4, next_ms = $5, sent_ms = $6, delivered = $7 WHERE number = $1",
            &[
                &to_db(number),
                &status.state.as_str(),
                &attempts,
                &status.last_error,
                &to_db(status.next_ms),
                &status.sent_ms.map(to_db),
                &status.delivered_db(),
            ],
        )?;
        Ok(())
    }

    fn prune(&mut self, before_ms: u64) -> Result<u64, Error> {
        let mut tx = self.client.transaction()?;
        let n = tx.execute(
            "DELETE FROM events WHERE time_ms < $1 \
             AND NOT EXISTS (SELECT 1 FROM incident_events ie WHERE ie.reference = events.reference)",
            &[&to_db(before_ms)],
        )?;
        tx.execute(
            "DELETE FROM auth_failures WHERE time_ms < $1",
            &[&to_db(before_ms)],
        )?;
        tx.commit()?;
        Ok(n)
    }

    fn record_filter_check(&mut self, c: &NewFilterCheck) -> Result<u64, Error> {
        let mut tx = self.client.transaction()?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO filter_checks (started_ms, finished_ms, ran_by, proxy, suite, policy, probes, \
                 failures, under_blocked, over_blocked, errors, passed) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                &[
                    &to_db(c.started_ms),
                    &to_db(c.finished_ms),
                    &no_nul(&c.ran_by),
                    &no_nul(&c.proxy),
                    &no_nul(&c.suite),
                    &no_nul(&c.policy),
                    &to_db(c.probes),
                    &to_db(c.failures),
                    &to_db(c.under_blocked),
                    &to_db(c.over_blocked),
                    &to_db(c.errors),
                    &c.passed,
                ],
            )?
            .try_get(0)?;
        let insert = tx.prepare(&format!(
            "INSERT INTO filter_check_results (check_id, {FILTER_RESULT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))?;
        for r in &c.results {
            let status = r.status.map(i32::from);
            tx.execute(
                &insert,
                &[
                    &id,
                    &no_nul(&r.group),
                    &no_nul(&r.band),
                    &no_nul(&r.kind),
                    &no_nul(&r.category),
                    &no_nul(&r.url),
                    &no_nul(&r.expected),
                    &no_nul(&r.outcome),
                    &status,
                    &r.pass,
                    &no_nul(&r.detail),
                ],
            )?;
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
            "SELECT {FILTER_CHECK_COLUMNS} FROM filter_checks WHERE started_ms >= $1 AND started_ms < $2 \
             ORDER BY started_ms DESC, id DESC LIMIT $3"
        );
        let rows = self
            .client
            .query(&sql, &[&to_db(since_ms), &to_db(until_ms), &to_db(limit)])?;
        rows.iter()
            .map(|r| raw_filter_check(r).map(RawFilterCheck::into_check))
            .collect()
    }

    fn filter_check_by_id(&mut self, id: u64) -> Result<Option<FilterCheck>, Error> {
        let sql = format!("SELECT {FILTER_CHECK_COLUMNS} FROM filter_checks WHERE id = $1");
        let row = self.client.query_opt(&sql, &[&to_db(id)])?;
        row.map(|r| raw_filter_check(&r).map(RawFilterCheck::into_check))
            .transpose()
    }

    fn filter_check_results(&mut self, id: u64) -> Result<Vec<FilterCheckResult>, Error> {
        let sql = format!(
            "SELECT {FILTER_RESULT_COLUMNS} FROM filter_check_results WHERE check_id = $1 ORDER BY id"
        );
        let rows = self.client.query(&sql, &[&to_db(id)])?;
        rows.iter()
            .map(|r| {
                Ok(RawFilterCheckResult {
                    group: r.try_get(0)?,
                    band: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    category: r.try_get(3)?,
                    url: r.try_get(4)?,
                    expected: r.try_get(5)?,
                    outcome: r.try_get(6)?,
                    status: r.try_get(7)?,
                    pass: r.try_get(8)?,
                    detail: r.try_get(9)?,
                }
                .into_result())
            })
            .collect()
    }

    fn block_counts(&mut self, since_ms: u64, until_ms: u64) -> Result<Vec<BlockCount>, Error> {
        let sql = with_placeholders(BLOCK_COUNTS_SQL, '$');
        let rows = self
            .client
            .query(&sql, &[&to_db(since_ms), &to_db(until_ms)])?;
        rows.iter()
            .map(|r| {
                Ok(BlockCount {
                    group: r.try_get(0)?,
                    category: r.try_get(1)?,
                    count: from_db(r.try_get(2)?),
                })
            })
            .collect()
    }

    fn opened_counts(&mut self, since_ms: u64, until_ms: u64) -> Result<Vec<KindCount>, Error> {
        let sql = with_placeholders(OPENED_COUNTS_SQL, '$');
        let rows = self
            .client
            .query(&sql, &[&to_db(since_ms), &to_db(until_ms)])?;
        rows.iter()
            .map(|r| {
                Ok(KindCount {
                    kind: r.try_get(0)?,
                    count: from_db(r.try_get(1)?),
                })
            })
            .collect()
    }

    fn closures(&mut self, since_ms: u64, until_ms: u64) -> Result<Vec<Closure>, Error> {
        let sql = with_placeholders(CLOSURES_SQL, '$');
        let rows = self
            .client
            .query(&sql, &[&to_db(since_ms), &to_db(until_ms)])?;
        rows.iter()
            .map(|r| {
                Ok(Closure {
                    number: from_db(r.try_get(0)?),
                    kind: r.try_get(1)?,
                    opened_ms: from_db(r.try_get(2)?),
                    closed_ms: from_db(r.try_get(3)?),
                })
            })
            .collect()
    }
}
