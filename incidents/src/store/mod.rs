//! The incident store: one schema on SQLite or PostgreSQL.
//!
//! In: a [`StoreLocation`] (a SQLite file, or a `postgres://` URL). Out: a
//! [`Store`] with every migration of this build applied: each one the
//! database has not recorded in `schema_version` (one row per applied
//! version), in order, all in one transaction. So a migration numbered below
//! one already applied (branches that each added one) is still applied.
//! Refused: a database that records a version this build does not know (a
//! newer binary wrote it, and an older one must not), and any URL that is
//! neither.
//!
//! Tables: `events` (the raw block log, `reference` UNIQUE so a replayed event is
//! stored once), `auth_failures`, `incidents` (the schools' incident-log fields),
//! `incident_events` (which events an incident came from), `audit` (who, when,
//! what changed) and `schema_version`.
//!
//! The workflow ([`crate::review`]) and the URL restriction live here, once, over
//! a small per-engine trait; each change is written with its audit entries in one
//! transaction, guarded by the incident's revision so two reviewers cannot
//! silently overwrite each other.
use std::path::Path;

use policy::event::{BlockEvent, BlockKind};

use crate::alert::AlertStatus;
use crate::error::Error;
use crate::evidence::Evidence;
use crate::model::{
    ActionTaken, Actor, AuditEntry, AuthFailure, EventFilter, Incident, IncidentFilter,
    IncidentKind, NewIncident, Role, SignOff, State, Subject, Urgency, actions_from_text,
    actions_to_text,
};
use crate::reporting::{
    BlockCount, Closure, FilterCheck, FilterCheckResult, KindCount, NewFilterCheck,
};
use crate::review::{self, Step};
use crate::settings::StoreLocation;

#[cfg(test)]
mod migration_tests;
mod postgres;
mod reports;
mod sqlite;

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 4;

/// One schema migration, written once per engine.
pub(crate) struct Migration {
    pub version: u32,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Every migration, oldest first. Never edit a released one: add the next.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sqlite: include_str!("migrations/0001_sqlite.sql"),
        postgres: include_str!("migrations/0001_postgres.sql"),
    },
    Migration {
        version: 2,
        sqlite: include_str!("migrations/0002_sqlite.sql"),
        postgres: include_str!("migrations/0002_postgres.sql"),
    },
    Migration {
        version: 3,
        sqlite: include_str!("migrations/0003_sqlite.sql"),
        postgres: include_str!("migrations/0003_postgres.sql"),
    },
    Migration {
        version: 4,
        sqlite: include_str!("migrations/0004_sqlite.sql"),
        postgres: include_str!("migrations/0004_postgres.sql"),
    },
];

/// The migrations of `all` that `recorded` (the versions in the database's
/// `schema_version`) does not have, in order. A recorded version that is not
/// in `all` is refused: that database was written by a build this one does
/// not know.
pub(crate) fn pending<'a>(
    all: &'a [Migration],
    recorded: &[u32],
) -> Result<Vec<&'a Migration>, Error> {
    let unknown: Vec<String> = recorded
        .iter()
        .filter(|v| !all.iter().any(|m| m.version == **v))
        .map(u32::to_string)
        .collect();
    if !unknown.is_empty() {
        let known: Vec<String> = all.iter().map(|m| m.version.to_string()).collect();
        return Err(Error::Schema(format!(
            "the database has schema version {} applied, which this build does not know \
             (it knows {}): it was written by another hallpass build; upgrade hallpass",
            unknown.join(", "),
            known.join(", ")
        )));
    }
    Ok(all
        .iter()
        .filter(|m| !recorded.contains(&m.version))
        .collect())
}

/// A newly stored item handed to the rules inside the write transaction.
pub(crate) enum Fresh<'a> {
    Event(&'a BlockEvent),
    Auth(&'a AuthFailure),
}

/// What one [`Store::record`] call did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordStats {
    /// Events newly stored (duplicates by reference are not counted).
    pub events: usize,
    /// Auth failures newly stored.
    pub auth_failures: usize,
    /// Incidents opened (events added to an existing `new` incident not counted).
    pub incidents_opened: usize,
}

/// What each engine provides; the workflow is written once on top.
pub(crate) trait Engine: Send {
    fn name(&self) -> &'static str;
    fn schema_version(&mut self) -> Result<u32, Error>;
    fn record(
        &mut self,
        events: &[BlockEvent],
        auth: &[AuthFailure],
        decide: &mut dyn FnMut(Fresh<'_>) -> Vec<NewIncident>,
        now_ms: u64,
        coalesce_ms: u64,
    ) -> Result<RecordStats, Error>;
    fn events(&mut self, filter: &EventFilter) -> Result<Vec<BlockEvent>, Error>;
    fn incident_events(&mut self, number: u64) -> Result<Vec<BlockEvent>, Error>;
    fn open_incident(
        &mut self,
        new: &NewIncident,
        now_ms: u64,
        coalesce_ms: u64,
    ) -> Result<(u64, bool), Error>;
    fn incident(&mut self, number: u64) -> Result<Option<Incident>, Error>;
    fn incidents(&mut self, filter: &IncidentFilter) -> Result<Vec<Incident>, Error>;
    fn save(&mut self, incident: &Incident, audit: &[AuditEntry]) -> Result<(), Error>;
    fn append_audit(&mut self, audit: &[AuditEntry]) -> Result<(), Error>;
    fn audit_trail(&mut self, number: u64) -> Result<Vec<AuditEntry>, Error>;
    fn delete(&mut self, number: u64, audit: &AuditEntry) -> Result<bool, Error>;
    fn prune(&mut self, before_ms: u64) -> Result<u64, Error>;
    fn record_filter_check(&mut self, check: &NewFilterCheck) -> Result<u64, Error>;
    fn filter_checks(
        &mut self,
        since_ms: u64,
        until_ms: u64,
        limit: u64,
    ) -> Result<Vec<FilterCheck>, Error>;
    fn filter_check_by_id(&mut self, id: u64) -> Result<Option<FilterCheck>, Error>;
    fn filter_check_results(&mut self, id: u64) -> Result<Vec<FilterCheckResult>, Error>;
    fn block_counts(&mut self, since_ms: u64, until_ms: u64) -> Result<Vec<BlockCount>, Error>;
    fn opened_counts(&mut self, since_ms: u64, until_ms: u64) -> Result<Vec<KindCount>, Error>;
    fn closures(&mut self, since_ms: u64, until_ms: u64) -> Result<Vec<Closure>, Error>;
    fn due_alerts(&mut self, now_ms: u64, limit: usize) -> Result<Vec<u64>, Error>;
    fn alert_status(&mut self, number: u64) -> Result<Option<AlertStatus>, Error>;
    fn save_alert(&mut self, number: u64, status: &AlertStatus) -> Result<(), Error>;
}

/// The incident store (SQLite or PostgreSQL behind one API).
///
/// Every method is blocking; call it from a plain thread or `spawn_blocking`.
/// Methods take `&mut self` because each holds one connection; share a store
/// between threads behind a mutex, or open one per thread.
pub struct Store {
    engine: Box<dyn Engine>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("engine", &self.engine.name())
            .finish()
    }
}

impl Store {
    /// Opens (creating and migrating) the store at `location`.
    pub fn open(location: &StoreLocation) -> Result<Store, Error> {
        match location {
            StoreLocation::Sqlite(path) => Store::open_sqlite(path),
            StoreLocation::Postgres(url) => Store::open_postgres(url),
        }
    }

    /// Opens a SQLite file (WAL mode), creating its folder and the schema.
    pub fn open_sqlite(path: &Path) -> Result<Store, Error> {
        Ok(Store {
            engine: Box::new(sqlite::SqliteEngine::open(path)?),
        })
    }

    /// Connects to PostgreSQL (`postgres://user@host:port/db`, libpq-style
    /// parameters such as `options=-csearch_path%3Dname` allowed) and migrates.
    pub fn open_postgres(url: &str) -> Result<Store, Error> {
        Ok(Store {
            engine: Box::new(postgres::PostgresEngine::connect(url)?),
        })
    }

    /// `sqlite` or `postgres`.
    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// The highest schema version applied to the database (every migration
    /// of this build is applied once it is open).
    pub fn schema_version(&mut self) -> Result<u32, Error> {
        self.engine.schema_version()
    }

    /// Stores events (duplicates by reference ignored) without running any rules.
    /// Returns how many were new.
    pub fn write_events(&mut self, events: &[BlockEvent], now_ms: u64) -> Result<usize, Error> {
        let stats = self
            .engine
            .record(events, &[], &mut |_| Vec::new(), now_ms, 0)?;
        Ok(stats.events)
    }

    /// Stores events and auth failures and opens the incidents `rules` ask for,
    /// all in one transaction. Only newly stored items reach the rules, so a
    /// replayed batch opens nothing twice.
    pub fn record(
        &mut self,
        events: &[BlockEvent],
        auth: &[AuthFailure],
        rules: &mut crate::rules::RuleEngine,
        now_ms: u64,
    ) -> Result<RecordStats, Error> {
        let coalesce = crate::duration::as_ms(rules.rules().coalesce_window);
        let mut decide = |fresh: Fresh<'_>| match fresh {
            Fresh::Event(ev) => rules.on_event(ev),
            Fresh::Auth(f) => rules.on_auth_failure(f).into_iter().collect(),
        };
        self.engine
            .record(events, auth, &mut decide, now_ms, coalesce)
    }

    /// Raw events matching `filter`, oldest first.
    pub fn events(&mut self, filter: &EventFilter) -> Result<Vec<BlockEvent>, Error> {
        self.engine.events(filter)
    }

    /// Opens an incident (or adds its events to a matching `new` one within
    /// `coalesce_ms`). Returns its number and whether it was newly opened.
    pub fn open_incident(
        &mut self,
        new: &NewIncident,
        now_ms: u64,
        coalesce_ms: u64,
    ) -> Result<(u64, bool), Error> {
        self.engine.open_incident(new, now_ms, coalesce_ms)
    }

    /// A member of staff reports an unsuitable site that was not blocked: an
    /// `unsuitable-site` incident for the e-safety officer.
    pub fn report_unsuitable_site(
        &mut self,
        actor: &Actor,
        url: &str,
        note: &str,
        now_ms: u64,
    ) -> Result<u64, Error> {
        let new = NewIncident {
            kind: IncidentKind::UnsuitableSite,
            urgency: Urgency::Normal,
            reported_by: actor.name.clone(),
            reported_to: Role::EsafetyOfficer.as_str().into(),
            time_ms: now_ms,
            description: format!("reported by {} ({}): {note}", actor.name, actor.role),
            category: None,
            url: Some(url.to_string()),
            subject: Subject {
                who: None,
                group: String::new(),
                ip: None,
                identifiable: false,
            },
            references: Vec::new(),
            dedup_key: format!("unsuitable-site|{url}"),
        };
        Ok(self.engine.open_incident(&new, now_ms, 0)?.0)
    }

    /// A pupil's review request that arrives outside the event path (the block
    /// page's form, with the event's reference): stored like any event, so the
    /// `review-request` rule opens the incident.
    pub fn request_review(
        &mut self,
        event: &BlockEvent,
        rules: &mut crate::rules::RuleEngine,
        now_ms: u64,
    ) -> Result<RecordStats, Error> {
        let mut ev = event.clone();
        ev.kind = BlockKind::ReviewRequest;
        self.record(std::slice::from_ref(&ev), &[], rules, now_ms)
    }

    /// One incident as `actor` may see it. Reading an illegal incident's URL (as
    /// the safeguarding lead) is audited.
    pub fn incident(&mut self, number: u64, actor: &Actor, now_ms: u64) -> Result<Incident, Error> {
        let incident = self
            .engine
            .incident(number)?
            .ok_or(Error::NotFound(number))?;
        let mut shown = self.present(vec![incident], actor, now_ms)?;
        shown
            .pop()
            .ok_or_else(|| Error::Internal("present dropped an incident".into()))
    }

    /// Incidents matching `filter`, newest first, with every URL left out
    /// (`url_withheld` set where one exists), whatever the role: for lists and
    /// counts, which never show URLs, so nothing is read that needs auditing.
    pub fn incident_list(&mut self, filter: &IncidentFilter) -> Result<Vec<Incident>, Error> {
        let mut all = self.engine.incidents(filter)?;
        for i in &mut all {
            if i.url.take().is_some() {
                i.url_withheld = true;
            }
        }
        Ok(all)
    }

    /// One incident opened for reading by a person (the console's detail page):
    /// as [`Store::incident`], and every view of an `illegal` incident is
    /// audited (`view`), whether or not the role may see its URL.
    pub fn view_incident(
        &mut self,
        number: u64,
        actor: &Actor,
        now_ms: u64,
    ) -> Result<Incident, Error> {
        let incident = self.incident(number, actor, now_ms)?;
        if incident.kind == IncidentKind::Illegal {
            let detail = if incident.url_withheld {
                "viewed; the URL was withheld from this role"
            } else {
                "viewed"
            };
            self.engine
                .append_audit(&[audit(number, actor, now_ms, "view", detail)])?;
        }
        Ok(incident)
    }

    /// Incidents matching `filter`, newest first, as `actor` may see them.
    pub fn incidents(
        &mut self,
        filter: &IncidentFilter,
        actor: &Actor,
        now_ms: u64,
    ) -> Result<Vec<Incident>, Error> {
        let all = self.engine.incidents(filter)?;
        self.present(all, actor, now_ms)
    }

    /// Withholds illegal URLs from every role but the DSL, and audits each read
    /// the DSL makes (in one write for a listing).
    fn present(
        &mut self,
        mut incidents: Vec<Incident>,
        actor: &Actor,
        now_ms: u64,
    ) -> Result<Vec<Incident>, Error> {
        let mut reads = Vec::new();
        for i in &mut incidents {
            if i.kind != IncidentKind::Illegal || i.url.is_none() {
                continue;
            }
            if review::may_see_url(actor.role, i.kind) {
                reads.push(audit(
                    i.number,
                    actor,
                    now_ms,
                    "read-url",
                    "the illegal URL was shown",
                ));
            } else {
                i.url = None;
                i.url_withheld = true;
            }
        }
        if !reads.is_empty() {
            self.engine.append_audit(&reads)?;
        }
        Ok(incidents)
    }

    /// The audit trail of an incident, oldest first (kept after a delete).
    pub fn audit_trail(&mut self, number: u64) -> Result<Vec<AuditEntry>, Error> {
        self.engine.audit_trail(number)
    }

    /// new → under-review.
    pub fn start_review(
        &mut self,
        number: u64,
        actor: &Actor,
        now_ms: u64,
    ) -> Result<Incident, Error> {
        self.change(number, actor, now_ms, |i, trail| {
            review::may_review(actor.role, i.kind)?;
            step(i, Step::StartReview, actor, now_ms, String::new(), trail)
        })
    }

    /// Records the review (result, actions taken, optional outcome):
    /// under-review → action-taken. From `new`, the review is started first (both
    /// steps audited).
    pub fn record_review(
        &mut self,
        number: u64,
        actor: &Actor,
        result: &str,
        actions: &[ActionTaken],
        outcome: Option<&str>,
        now_ms: u64,
    ) -> Result<Incident, Error> {
        self.change(number, actor, now_ms, |i, trail| {
            review::may_review(actor.role, i.kind)?;
            if i.state == State::New {
                step(i, Step::StartReview, actor, now_ms, String::new(), trail)?;
            }
            let detail = format!(
                "result: {result}; actions: {}; outcome: {}",
                show_actions(actions),
                outcome.unwrap_or("-")
            );
            step(i, Step::RecordReview, actor, now_ms, detail, trail)?;
            i.review_date_ms = Some(now_ms);
            i.review_result = Some(result.to_string());
            i.actions = actions.to_vec();
            if let Some(o) = outcome {
                i.outcome = Some(o.to_string());
            }
            Ok(())
        })
    }

    /// action-taken → closed, optionally recording the outcome.
    pub fn close(
        &mut self,
        number: u64,
        actor: &Actor,
        outcome: Option<&str>,
        now_ms: u64,
    ) -> Result<Incident, Error> {
        self.change(number, actor, now_ms, |i, trail| {
            review::may_review(actor.role, i.kind)?;
            let detail = outcome.map(|o| format!("outcome: {o}")).unwrap_or_default();
            step(i, Step::Close, actor, now_ms, detail, trail)?;
            if let Some(o) = outcome {
                i.outcome = Some(o.to_string());
            }
            Ok(())
        })
    }

    /// closed → under-review. Earlier sign-offs are cleared, since they attested
    /// the review that is now being reopened (the audit trail keeps them).
    pub fn reopen(
        &mut self,
        number: u64,
        actor: &Actor,
        reason: &str,
        now_ms: u64,
    ) -> Result<Incident, Error> {
        self.change(number, actor, now_ms, |i, trail| {
            review::may_review(actor.role, i.kind)?;
            let detail = format!(
                "reason: {reason}; cleared sign-offs: principal {}, governor {}",
                show_signoff(&i.principal_signoff),
                show_signoff(&i.governor_signoff)
            );
            step(i, Step::Reopen, actor, now_ms, detail, trail)?;
            i.principal_signoff = None;
            i.governor_signoff = None;
            Ok(())
        })
    }

    /// Sign-off by the principal or a governor (the actor's role says which).
    pub fn sign(&mut self, number: u64, actor: &Actor, now_ms: u64) -> Result<Incident, Error> {
        self.change(number, actor, now_ms, |i, trail| {
            review::may_sign(i.number, actor.role, i.state)?;
            let slot = match actor.role {
                Role::Principal => &mut i.principal_signoff,
                _ => &mut i.governor_signoff,
            };
            if let Some(previous) = slot {
                return Err(Error::Forbidden {
                    role: actor.role,
                    action: "sign twice",
                    hint: Some(format!(
                        "already signed by {} at {}",
                        previous.by,
                        crate::clock::format_ms(previous.at_ms)
                    )),
                });
            }
            *slot = Some(SignOff {
                by: actor.name.clone(),
                at_ms: now_ms,
            });
            trail.push(audit(
                i.number,
                actor,
                now_ms,
                &format!("sign-{}", actor.role),
                "",
            ));
            Ok(())
        })
    }

    /// The police evidence export of an incident: its event rows, the SHA-256 of
    /// each row, and times. Safeguarding lead only; audited.
    pub fn evidence(&mut self, number: u64, actor: &Actor, now_ms: u64) -> Result<Evidence, Error> {
        review::may_handle_records(actor.role, "export evidence")?;
        let incident = self
            .engine
            .incident(number)?
            .ok_or(Error::NotFound(number))?;
        let events = self.engine.incident_events(number)?;
        let evidence = Evidence::build(incident, &events, &actor.name, now_ms);
        self.engine.append_audit(&[audit(
            number,
            actor,
            now_ms,
            "export-evidence",
            &format!("{} event rows", evidence.rows.len()),
        )])?;
        Ok(evidence)
    }

    /// Deletes an incident (the explicit command schools use at the end of its
    /// keeping period). Safeguarding lead only; the audit trail is kept.
    pub fn delete_incident(
        &mut self,
        number: u64,
        actor: &Actor,
        now_ms: u64,
    ) -> Result<(), Error> {
        review::may_handle_records(actor.role, "delete incidents")?;
        let incident = self
            .engine
            .incident(number)?
            .ok_or(Error::NotFound(number))?;
        let entry = audit(
            number,
            actor,
            now_ms,
            "delete",
            &format!(
                "{} incident in state {} deleted",
                incident.kind, incident.state
            ),
        );
        if self.engine.delete(number, &entry)? {
            Ok(())
        } else {
            Err(Error::NotFound(number))
        }
    }

    /// Urgent incidents whose alert is pending and due at `now_ms`, oldest
    /// first, at most `limit`.
    pub fn due_alerts(&mut self, now_ms: u64, limit: usize) -> Result<Vec<u64>, Error> {
        self.engine.due_alerts(now_ms, limit)
    }

    /// The alert of an urgent incident (`None` for other incidents): pending,
    /// sent or failed, with the attempts and the last delivery error. Any role
    /// may see it; it carries no URL.
    pub fn alert_status(&mut self, number: u64) -> Result<Option<AlertStatus>, Error> {
        self.engine.alert_status(number)
    }

    /// Records the outcome of a delivery attempt.
    pub fn save_alert(&mut self, number: u64, status: &AlertStatus) -> Result<(), Error> {
        self.engine.save_alert(number, status)
    }

    /// An incident as stored, for the alerter (which never puts its URL in an
    /// alert); no role check and no audit entry.
    pub(crate) fn incident_for_alert(&mut self, number: u64) -> Result<Option<Incident>, Error> {
        self.engine.incident(number)
    }

    /// Deletes raw events older than `before_ms` that no incident refers to
    /// (evidence of a kept incident is kept with it). Returns how many went.
    pub fn prune_events(&mut self, before_ms: u64) -> Result<u64, Error> {
        self.engine.prune(before_ms)
    }

    /// Loads, applies `f` (which checks and mutates, pushing audit entries) and
    /// saves with the audit entries in one transaction.
    fn change(
        &mut self,
        number: u64,
        actor: &Actor,
        now_ms: u64,
        f: impl FnOnce(&mut Incident, &mut Vec<AuditEntry>) -> Result<(), Error>,
    ) -> Result<Incident, Error> {
        let mut incident = self
            .engine
            .incident(number)?
            .ok_or(Error::NotFound(number))?;
        let mut trail = Vec::new();
        f(&mut incident, &mut trail)?;
        incident.updated_ms = now_ms;
        self.engine.save(&incident, &trail)?;
        incident.revision += 1;
        let mut shown = self.present(vec![incident], actor, now_ms)?;
        shown
            .pop()
            .ok_or_else(|| Error::Internal("present dropped an incident".into()))
    }
}

fn step(
    i: &mut Incident,
    step: Step,
    actor: &Actor,
    now_ms: u64,
    detail: String,
    trail: &mut Vec<AuditEntry>,
) -> Result<(), Error> {
    let to = review::transition(i.number, i.state, step)?;
    let detail = if detail.is_empty() {
        format!("{} → {to}", i.state)
    } else {
        format!("{} → {to}; {detail}", i.state)
    };
    trail.push(audit(i.number, actor, now_ms, step.as_str(), &detail));
    i.state = to;
    Ok(())
}

fn audit(number: u64, actor: &Actor, now_ms: u64, action: &str, detail: &str) -> AuditEntry {
    AuditEntry {
        number,
        at_ms: now_ms,
        actor: actor.name.clone(),
        role: actor.role.as_str().into(),
        action: action.into(),
        detail: detail.into(),
    }
}

fn show_actions(actions: &[ActionTaken]) -> String {
    if actions.is_empty() {
        "none".into()
    } else {
        actions_to_text(actions)
    }
}

fn show_signoff(s: &Option<SignOff>) -> String {
    match s {
        Some(s) => format!("{} at {}", s.by, crate::clock::format_ms(s.at_ms)),
        None => "none".into(),
    }
}

/// The columns of a filter-check summary, in the order [`RawFilterCheck`] reads them.
pub(crate) const FILTER_CHECK_COLUMNS: &str = "id, started_ms, finished_ms, ran_by, proxy, suite, \
     policy, probes, failures, under_blocked, over_blocked, errors, passed";

/// The columns of a probe result, in the order [`RawFilterCheckResult`] reads them.
pub(crate) const FILTER_RESULT_COLUMNS: &str =
    "grp, band, kind, category, url, expected, outcome, status, pass, detail";

/// The SQL both engines count blocks with (`?`/`$` placeholders 1 and 2 are
/// the period). Review requests are events, not blocks.
pub(crate) const BLOCK_COUNTS_SQL: &str = "SELECT grp, COALESCE(category, ''), COUNT(*) FROM events \
     WHERE time_ms >= {1} AND time_ms < {2} AND kind <> 'review-request' GROUP BY grp, COALESCE(category, '')";

/// The SQL both engines count opened incidents with.
pub(crate) const OPENED_COUNTS_SQL: &str = "SELECT kind, COUNT(*) FROM incidents \
     WHERE opened_ms >= {1} AND opened_ms < {2} GROUP BY kind";

/// Incidents still closed whose last close is in the period.
pub(crate) const CLOSURES_SQL: &str = "SELECT i.number, i.kind, i.opened_ms, MAX(a.at_ms) \
     FROM incidents i JOIN audit a ON a.number = i.number \
     WHERE a.action = 'close' AND i.state = 'closed' GROUP BY i.number, i.kind, i.opened_ms \
     HAVING MAX(a.at_ms) >= {1} AND MAX(a.at_ms) < {2} ORDER BY MAX(a.at_ms), i.number";

/// A shared query with the engine's placeholders (`?1` or `$1`).
pub(crate) fn with_placeholders(sql: &str, prefix: char) -> String {
    sql.replace("{1}", &format!("{prefix}1"))
        .replace("{2}", &format!("{prefix}2"))
}

/// A filter-check summary row as the databases return it.
pub(crate) struct RawFilterCheck {
    pub id: i64,
    pub started_ms: i64,
    pub finished_ms: i64,
    pub ran_by: String,
    pub proxy: String,
    pub suite: String,
    pub policy: String,
    pub probes: i64,
    pub failures: i64,
    pub under_blocked: i64,
    pub over_blocked: i64,
    pub errors: i64,
    pub passed: bool,
}

impl RawFilterCheck {
    pub(crate) fn into_check(self) -> FilterCheck {
        FilterCheck {
            id: from_db(self.id),
            check: NewFilterCheck {
                started_ms: from_db(self.started_ms),
                finished_ms: from_db(self.finished_ms),
                ran_by: self.ran_by,
                proxy: self.proxy,
                suite: self.suite,
                policy: self.policy,
                probes: from_db(self.probes),
                failures: from_db(self.failures),
                under_blocked: from_db(self.under_blocked),
                over_blocked: from_db(self.over_blocked),
                errors: from_db(self.errors),
                passed: self.passed,
                results: Vec::new(),
            },
        }
    }
}

/// A probe-result row as the databases return it.
pub(crate) struct RawFilterCheckResult {
    pub group: String,
    pub band: String,
    pub kind: String,
    pub category: String,
    pub url: String,
    pub expected: String,
    pub outcome: String,
    pub status: Option<i32>,
    pub pass: bool,
    pub detail: String,
}

impl RawFilterCheckResult {
    pub(crate) fn into_result(self) -> FilterCheckResult {
        FilterCheckResult {
            group: self.group,
            band: self.band,
            kind: self.kind,
            category: self.category,
            url: self.url,
            expected: self.expected,
            outcome: self.outcome,
            status: self.status.and_then(|s| u16::try_from(s).ok()),
            pass: self.pass,
            detail: self.detail,
        }
    }
}

/// Milliseconds as the databases store them (BIGINT): saturating, never wrapping.
pub(crate) fn to_db(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A stored BIGINT back to milliseconds; negative values (never written by us)
/// read as 0.
pub(crate) fn from_db(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The event columns, in the order [`RawEvent`] reads them.
pub(crate) const EVENT_COLUMNS: &str =
    "reference, time_ms, client_ip, who, grp, band, method, url, category, rule, kind";

/// An event row as the databases return it.
pub(crate) struct RawEvent {
    pub reference: String,
    pub time_ms: i64,
    pub client_ip: String,
    pub who: Option<String>,
    pub group: String,
    pub band: String,
    pub method: String,
    pub url: String,
    pub category: Option<String>,
    pub rule: Option<String>,
    pub kind: String,
}

impl RawEvent {
    pub(crate) fn into_event(self) -> Result<BlockEvent, Error> {
        let client_ip = self.client_ip.parse().map_err(|_| {
            Error::BadRow(format!(
                "event {}: bad client_ip `{}`",
                self.reference, self.client_ip
            ))
        })?;
        let kind = block_kind(&self.kind).ok_or_else(|| {
            Error::BadRow(format!(
                "event {}: unknown kind `{}`",
                self.reference, self.kind
            ))
        })?;
        Ok(BlockEvent {
            reference: self.reference,
            time_ms: from_db(self.time_ms),
            client_ip,
            who: self.who,
            group: self.group,
            band: self.band,
            method: self.method,
            url: self.url,
            category: self.category,
            rule: self.rule,
            kind,
        })
    }
}

fn block_kind(text: &str) -> Option<BlockKind> {
    [
        BlockKind::Policy,
        BlockKind::UpstreamCertificate,
        BlockKind::Fronting,
        BlockKind::Destination,
        BlockKind::DecisionFailed,
        BlockKind::ReviewRequest,
    ]
    .into_iter()
    .find(|k| k.as_str() == text)
}

/// The incident columns, in the order [`RawIncident`] reads them.
pub(crate) const INCIDENT_COLUMNS: &str = "number, kind, urgency, state, reported_by, reported_to, \
     opened_ms, description, category, url, subject_who, subject_group, subject_ip, identifiable, \
     review_date_ms, review_result, actions, outcome, principal_by, principal_ms, governor_by, \
     governor_ms, revision, updated_ms";

/// An incident row as the databases return it.
pub(crate) struct RawIncident {
    pub number: i64,
    pub kind: String,
    pub urgency: String,
    pub state: String,
    pub reported_by: String,
    pub reported_to: String,
    pub opened_ms: i64,
    pub description: String,
    pub category: Option<String>,
    pub url: Option<String>,
    pub subject_who: Option<String>,
    pub subject_group: String,
    pub subject_ip: Option<String>,
    pub identifiable: bool,
    pub review_date_ms: Option<i64>,
    pub review_result: Option<String>,
    pub actions: String,
    pub outcome: Option<String>,
    pub principal_by: Option<String>,
    pub principal_ms: Option<i64>,
    pub governor_by: Option<String>,
    pub governor_ms: Option<i64>,
    pub revision: i64,
    pub updated_ms: i64,
}

impl RawIncident {
    pub(crate) fn into_incident(self, references: Vec<String>) -> Result<Incident, Error> {
        let number = from_db(self.number);
        let bad = |what: &str, e: String| Error::BadRow(format!("incident {number}: {what}: {e}"));
        let signoff = |by: Option<String>, at: Option<i64>| match (by, at) {
            (Some(by), Some(at)) => Some(SignOff {
                by,
                at_ms: from_db(at),
            }),
            _ => None,
        };
        Ok(Incident {
            number,
            kind: self.kind.parse().map_err(|e| bad("kind", e))?,
            urgency: self.urgency.parse().map_err(|e| bad("urgency", e))?,
            state: self.state.parse().map_err(|e| bad("state", e))?,
            reported_by: self.reported_by,
            reported_to: self.reported_to,
            opened_ms: from_db(self.opened_ms),
            description: self.description,
            category: self.category,
            url: self.url,
            url_withheld: false,
            subject: Subject {
                who: self.subject_who,
                group: self.subject_group,
                ip: self.subject_ip,
                identifiable: self.identifiable,
            },
            review_date_ms: self.review_date_ms.map(from_db),
            review_result: self.review_result,
            actions: actions_from_text(&self.actions).map_err(|e| bad("actions", e))?,
            outcome: self.outcome,
            principal_signoff: signoff(self.principal_by, self.principal_ms),
            governor_signoff: signoff(self.governor_by, self.governor_ms),
            references,
            revision: from_db(self.revision),
            updated_ms: from_db(self.updated_ms),
        })
    }
}

/// The stored text of an incident's actions.
pub(crate) fn actions_text(i: &Incident) -> String {
    actions_to_text(&i.actions)
}
