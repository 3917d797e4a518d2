//! Incident rules: which events open which incidents.
//!
//! In: one [`BlockEvent`] or [`AuthFailure`] at a time, the set of locked-baseline
//! categories (from the compiled policy) and the [`Rules`] settings. Out: the
//! [`NewIncident`]s to open. The classification ([`Rules::classify`]) is a pure
//! function of the event; counting rules (repeats, auth failures) keep their
//! sliding windows in [`RuleEngine`], which is plain data owned by the caller (the
//! intake's writer), keyed by the event's own time, never a clock.
//!
//! Defaults (each overridable in `[incidents.rules]`):
//! - a locked-baseline hit (rule starting with `baseline`, or a locked category)
//!   opens an urgent `illegal` incident for the safeguarding lead, except the
//!   baseline's security categories (`malware`, `phishing`), which protect the
//!   network rather than the pupil and so open nothing;
//! - a safeguarding category (self-harm, extremism, ...) opens `safeguarding`;
//! - 5 blocks of one category by one account within 10 minutes open `inappropriate`;
//! - 10 authentication failures from one address within 5 minutes open `access`;
//! - a pupil's review request opens `review-request`.
//!
//! Shared logins (no account, or the account *is* the group) make the incident
//! say that the individual is not identifiable, and name the group, address and time.
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use policy::event::{BlockEvent, BlockKind};
use serde::Deserialize;

use crate::clock::format_ms;
use crate::duration::{self, as_ms};
use crate::model::{AuthFailure, IncidentKind, NewIncident, Subject, Urgency, push_ip};

/// Who the rules say reported an incident.
pub const REPORTED_BY_RULES: &str = "hallpass";

/// The rules' settings, as written in `[incidents.rules]` (every key optional).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// Locked-baseline categories that open no incident: they guard the network
    /// (malware, phishing), not the pupil, and would bury the illegal-content
    /// alerts the DSL must act on at once.
    pub baseline_security: Vec<String>,
    /// Categories that open a `safeguarding` incident.
    pub safeguarding: Vec<String>,
    /// Blocks of one category by one account that open `inappropriate`.
    pub repeat_count: u32,
    /// ... within this window.
    #[serde(deserialize_with = "duration::deserialize")]
    pub repeat_window: Duration,
    /// Authentication failures from one address that open `access`.
    pub auth_failure_count: u32,
    /// ... within this window.
    #[serde(deserialize_with = "duration::deserialize")]
    pub auth_failure_window: Duration,
    /// A `new` incident with the same kind, subject and category collects
    /// further events within this window instead of opening another one (one
    /// blocked page often fires several blocked requests).
    #[serde(deserialize_with = "duration::deserialize")]
    pub coalesce_window: Duration,
    /// Who `illegal` and `safeguarding` incidents are reported to.
    pub safeguarding_lead: String,
    /// Who every other incident is reported to.
    pub esafety_officer: String,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            baseline_security: vec!["malware".into(), "phishing".into()],
            safeguarding: [
                "self-harm",
                "suicide",
                "extremism",
                "radicalisation",
                "violence",
                "weapons",
                "drugs",
                "hate",
                "eating-disorders",
                "grooming",
            ]
            .map(String::from)
            .to_vec(),
            repeat_count: 5,
            repeat_window: Duration::from_secs(600),
            auth_failure_count: 10,
            auth_failure_window: Duration::from_secs(300),
            coalesce_window: Duration::from_secs(600),
            safeguarding_lead: "safeguarding-lead".into(),
            esafety_officer: "esafety-officer".into(),
        }
    }
}

/// The accounts `hallpass filter-check` probes with (one per group, from
/// `filter-check-logins.toml` in the state directory). Their blocks are the
/// check working as meant: a weekly probe of the locked baseline must not page
/// the safeguarding lead with an urgent `illegal` incident, nor a probe of
/// `drugs` open a `safeguarding` one. The events are stored all the same, named
/// by account, so the block report shows the check's traffic for what it is.
/// Only an authenticated account can be exempt: nothing a client sends in a
/// request (a header, an address) can switch incidents off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckAccounts(pub std::collections::BTreeSet<String>);

impl CheckAccounts {
    fn contains(&self, who: Option<&str>) -> bool {
        who.is_some_and(|w| self.0.contains(w))
    }
}

/// Whether `url` names a host under `.invalid`, which RFC 6761 reserves as a
/// name that never resolves: nothing can be reached there, so a block of one is
/// a probe of the filter (the locked baseline's test entries,
/// `child-abuse.hallpass-test.invalid`), never an attempt at content, and paging
/// the safeguarding lead for it would teach them to ignore the pages that
/// matter. The event itself is stored like any other.
fn is_reserved_test_name(url: &str) -> bool {
    // Most URLs do not even contain the word: skip the parse for them.
    let mentions = url
        .as_bytes()
        .windows(8)
        .any(|w| w.eq_ignore_ascii_case(b".invalid"));
    mentions
        && policy::url::CanonicalUrl::parse(url).is_ok_and(|u| {
            let host = u.host().as_str();
            host == "invalid" || host.ends_with(".invalid")
        })
}

/// The policy's locked-baseline category names (`policy.baseline()`), passed in
/// so this crate never loads a policy itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockedCategories(pub Vec<String>);

impl LockedCategories {
    /// The four categories every policy must lock, for callers without a policy.
    pub fn required() -> Self {
        LockedCategories(
            policy::policy::REQUIRED_BASELINE
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )
    }

    /// The locked-baseline categories of a loaded policy.
    pub fn of(policy: &policy::Policy) -> Self {
        LockedCategories(
            policy
                .baseline()
                .iter()
                .map(|c| c.name.to_string())
                .collect(),
        )
    }

    fn contains(&self, category: &str) -> bool {
        self.0.iter().any(|c| c == category)
    }
}

impl Rules {
    /// The incident a single event opens on its own (no counting), if any.
    pub fn classify(&self, ev: &BlockEvent, locked: &LockedCategories) -> Option<NewIncident> {
        let category = ev.category.as_deref();
        let baseline_rule = ev
            .rule
            .as_deref()
            .is_some_and(|r| r.starts_with("baseline"));
        let locked_hit = baseline_rule || category.is_some_and(|c| locked.contains(c));
        if locked_hit {
            if category.is_some_and(|c| self.baseline_security.iter().any(|s| s == c)) {
                return None;
            }
            return Some(self.incident(
                IncidentKind::Illegal,
                Urgency::Urgent,
                ev,
                &format!(
                    "locked-baseline block ({}): the URL is shown to the safeguarding lead only; never visit or preview it",
                    category.unwrap_or("baseline")
                ),
            ));
        }
        if let Some(c) = category
            && self.safeguarding.iter().any(|s| s == c)
        {
            return Some(self.incident(
                IncidentKind::Safeguarding,
                Urgency::Normal,
                ev,
                &format!("blocked request in safeguarding category `{c}`"),
            ));
        }
        if ev.kind == BlockKind::ReviewRequest {
            return Some(self.incident(
                IncidentKind::ReviewRequest,
                Urgency::Normal,
                ev,
                "a pupil asked for this block to be reviewed",
            ));
        }
        None
    }

    fn incident(
        &self,
        kind: IncidentKind,
        urgency: Urgency,
        ev: &BlockEvent,
        what: &str,
    ) -> NewIncident {
        let subject = subject_of(ev);
        let description = format!("{what}; {}", describe_subject(&subject, ev.time_ms));
        let reported_to = match kind {
            IncidentKind::Illegal | IncidentKind::Safeguarding => &self.safeguarding_lead,
            _ => &self.esafety_officer,
        };
        NewIncident {
            kind,
            urgency,
            reported_by: REPORTED_BY_RULES.into(),
            reported_to: reported_to.clone(),
            time_ms: ev.time_ms,
            description,
            category: ev.category.clone(),
            url: Some(ev.url.clone()),
            dedup_key: dedup_key(kind, &subject, ev.category.as_deref()),
            subject,
            references: vec![ev.reference.clone()],
        }
    }
}

/// Who an event is about: shared logins and subnet-only requests are not identifiable.
pub fn subject_of(ev: &BlockEvent) -> Subject {
    let identifiable = ev.who.as_deref().is_some_and(|w| w != ev.group);
    Subject {
        who: ev.who.clone().filter(|_| identifiable),
        group: ev.group.clone(),
        ip: Some(ev.client_ip.to_string()),
        identifiable,
    }
}

fn describe_subject(s: &Subject, time_ms: u64) -> String {
    let ip = s.ip.as_deref().unwrap_or("unknown address");
    match (&s.who, s.identifiable) {
        (Some(who), true) => format!(
            "account {who} (group {}), {ip}, {}",
            s.group,
            format_ms(time_ms)
        ),
        _ => format!(
            "the individual is not identifiable (shared login of group {}), {ip}, {}",
            s.group,
            format_ms(time_ms)
        ),
    }
}

fn dedup_key(kind: IncidentKind, s: &Subject, category: Option<&str>) -> String {
    // Not-identifiable subjects are keyed by group *and* address, so two pupils
    // on one shared login at different machines get separate incidents.
    let who = match (&s.who, s.identifiable) {
        (Some(w), true) => format!("u:{w}"),
        _ => format!("g:{}@{}", s.group, s.ip.as_deref().unwrap_or("")),
    };
    format!("{kind}|{who}|{}", category.unwrap_or(""))
}

/// Writes into `key` what the repeat rule counts `ev` under: the dedup key
/// of the `inappropriate` incident it would open (`dedup_key` over
/// `subject_of`), built in place because it is made for every block, not only
/// for the few that open an incident.
fn repeat_key(key: &mut String, ev: &BlockEvent, category: &str) {
    key.clear();
    key.push_str(IncidentKind::Inappropriate.as_str());
    key.push('|');
    match ev.who.as_deref() {
        Some(who) if who != ev.group => {
            key.push_str("u:");
            key.push_str(who);
        }
        _ => {
            key.push_str("g:");
            key.push_str(&ev.group);
            key.push('@');
            push_ip(key, ev.client_ip);
        }
    }
    key.push('|');
    key.push_str(category);
}

/// Sliding-window counts for a key, bounded in memory.
#[derive(Debug, Default)]
struct Windows {
    hits: HashMap<String, VecDeque<u64>>,
    /// The map size that triggers the next sweep of stale keys.
    sweep_at: usize,
}

/// Keys kept before stale ones are first swept: a school has a few thousand
/// accounts, each with a handful of categories.
const SWEEP_FROM: usize = 16_384;

impl Windows {
    /// Records a hit at `t`; returns true when `count` hits fall within `window`,
    /// and then starts that key afresh (one incident per burst, not per hit).
    fn hit(&mut self, key: &str, t: u64, window_ms: u64, count: u32) -> bool {
        if self.hits.len() >= self.sweep_at.max(SWEEP_FROM) {
            self.hits.retain(|_, q| {
                q.back()
                    .is_some_and(|&last| last.saturating_add(window_ms) >= t)
            });
            // Sweep again only once the live set has doubled: each sweep is paid
            // for by as many inserts as it scanned, so a hit stays O(1) amortised
            // however many keys are live within the window (regression: a sweep
            // on every hit above 50,000 keys cut the intake to 1,200 events/s).
            self.sweep_at = self.hits.len().saturating_mul(2);
        }
        let q = match self.hits.get_mut(key) {
            Some(q) => q,
            None => self.hits.entry(key.to_string()).or_default(),
        };
        q.push_back(t);
        while q
            .front()
            .is_some_and(|&first| first.saturating_add(window_ms) < t)
        {
            q.pop_front();
        }
        if q.len() >= count.max(1) as usize {
            q.clear();
            true
        } else {
            false
        }
    }
}

/// The rules plus the state of their counting windows.
#[derive(Debug)]
pub struct RuleEngine {
    rules: Rules,
    locked: LockedCategories,
    check_accounts: CheckAccounts,
    repeats: Windows,
    auth: Windows,
    /// Where each event's repeat key is written (kept, so counting a block
    /// allocates nothing once the key is known).
    key: String,
}

impl RuleEngine {
    /// Rules over a policy's locked categories.
    pub fn new(rules: Rules, locked: LockedCategories) -> Self {
        RuleEngine {
            rules,
            locked,
            check_accounts: CheckAccounts::default(),
            repeats: Windows::default(),
            auth: Windows::default(),
            key: String::new(),
        }
    }

    /// The settings.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Replaces the locked categories (after a policy reload); the counting
    /// windows are kept.
    pub fn set_locked(&mut self, locked: LockedCategories) {
        self.locked = locked;
    }

    /// Replaces the filter check's accounts (after a reload); see [`CheckAccounts`].
    pub fn set_check_accounts(&mut self, accounts: CheckAccounts) {
        self.check_accounts = accounts;
    }

    /// Incidents one newly stored event opens: its own class, plus `inappropriate`
    /// when it completes a burst of repeats. A filter check's own probes open
    /// none (they are still stored, as the check's evidence).
    pub fn on_event(&mut self, ev: &BlockEvent) -> Vec<NewIncident> {
        let mut out = Vec::new();
        if self.check_accounts.contains(ev.who.as_deref()) || is_reserved_test_name(&ev.url) {
            return out;
        }
        if let Some(i) = self.rules.classify(ev, &self.locked) {
            out.push(i);
        }
        if ev.kind == BlockKind::Policy
            && let Some(category) = ev.category.as_deref()
        {
            repeat_key(&mut self.key, ev, category);
            let window = as_ms(self.rules.repeat_window);
            if self
                .repeats
                .hit(&self.key, ev.time_ms, window, self.rules.repeat_count)
            {
                out.push(self.rules.incident(
                    IncidentKind::Inappropriate,
                    Urgency::Normal,
                    ev,
                    &format!(
                        "{} blocks of category `{category}` within {}",
                        self.rules.repeat_count,
                        show_duration(self.rules.repeat_window)
                    ),
                ));
            }
        }
        out
    }

    /// The `access` incident an authentication failure opens, when it completes a burst.
    pub fn on_auth_failure(&mut self, f: &AuthFailure) -> Option<NewIncident> {
        let ip = f.client_ip.to_string();
        let window = as_ms(self.rules.auth_failure_window);
        if !self
            .auth
            .hit(&ip, f.time_ms, window, self.rules.auth_failure_count)
        {
            return None;
        }
        let tried = f
            .who
            .as_deref()
            .map(|w| format!(" (last account tried: {w})"))
            .unwrap_or_default();
        Some(NewIncident {
            kind: IncidentKind::Access,
            urgency: Urgency::Normal,
            reported_by: REPORTED_BY_RULES.into(),
            reported_to: self.rules.esafety_officer.clone(),
            time_ms: f.time_ms,
            description: format!(
                "{} authentication failures from {ip} within {}{tried}, {}",
                self.rules.auth_failure_count,
                show_duration(self.rules.auth_failure_window),
                format_ms(f.time_ms)
            ),
            category: None,
            url: None,
            subject: Subject {
                who: f.who.clone(),
                group: String::new(),
                ip: Some(ip.clone()),
                identifiable: false,
            },
            references: Vec::new(),
            dedup_key: format!("access|{ip}"),
        })
    }
}

fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn event(reference: &str, who: Option<&str>, category: Option<&str>) -> BlockEvent {
        BlockEvent {
            reference: reference.into(),
            time_ms: 1_700_000_000_000,
            client_ip: [10, 1, 4, 23].into(),
            who: who.map(String::from),
            group: "year4".into(),
            band: "ks2".into(),
            method: "GET".into(),
            url: "http://blocked.test/page".into(),
            category: category.map(String::from),
            rule: Some("category policy.toml:14:1".into()),
            kind: BlockKind::Policy,
        }
    }

    fn kinds(v: &[NewIncident]) -> Vec<IncidentKind> {
        v.iter().map(|i| i.kind).collect()
    }

    #[test]
    fn filter_check_probes_open_no_incidents() {
        let mut engine = RuleEngine::new(Rules::default(), LockedCategories::required());
        engine.set_check_accounts(CheckAccounts(["check-year4".to_string()].into()));
        let mut baseline = event("A", Some("check-year4"), Some("child-abuse"));
        baseline.rule = Some("baseline baseline.toml:1:1".into());
        assert!(engine.on_event(&baseline).is_empty());
        let drugs = event("B", Some("check-year4"), Some("drugs"));
        assert!(engine.on_event(&drugs).is_empty());
        for i in 0..10 {
            let games = event(&format!("C{i}"), Some("check-year4"), Some("games"));
            assert!(engine.on_event(&games).is_empty());
        }
        // The same blocks by anyone else open what they always did.
        baseline.who = Some("amy".into());
        assert_eq!(kinds(&engine.on_event(&baseline)), [IncidentKind::Illegal]);
        baseline.who = None;
        assert_eq!(kinds(&engine.on_event(&baseline)), [IncidentKind::Illegal]);

        // A `.invalid` name never resolves: a locked-baseline test entry probed
        // from a subnet-identified group opens nothing, however it is spelt.
        for url in [
            "http://child-abuse.hallpass-test.invalid/",
            "https://WWW.Terrorism.hallpass-test.INVALID./x",
        ] {
            let mut probe = event("D", None, Some("child-abuse"));
            probe.rule = Some("baseline baseline.toml:1:1".into());
            probe.url = url.into();
            assert!(engine.on_event(&probe).is_empty(), "{url}");
        }
        // ... but a look-alike that does resolve still does.
        let mut real = event("E", None, Some("child-abuse"));
        real.url = "http://invalid.example.com/".into();
        assert_eq!(kinds(&engine.on_event(&real)), [IncidentKind::Illegal]);
    }

    #[test]
    fn each_default_rule_fires() {
        let mut engine = RuleEngine::new(Rules::default(), LockedCategories::required());
        let mut baseline = event("A", Some("amy"), Some("child-abuse"));
        baseline.rule = Some("baseline baseline.toml:1:1".into());
        let out = engine.on_event(&baseline);
        assert_eq!(kinds(&out), [IncidentKind::Illegal]);
        assert_eq!(out[0].urgency, Urgency::Urgent);
        assert_eq!(out[0].reported_to, "safeguarding-lead");

        // The rule text alone marks a baseline hit.
        let mut by_rule = event("B", Some("amy"), None);
        by_rule.rule = Some("baseline x".into());
        assert_eq!(kinds(&engine.on_event(&by_rule)), [IncidentKind::Illegal]);

        // Security categories of the baseline open nothing.
        assert!(
            engine
                .on_event(&event("C", Some("amy"), Some("malware")))
                .is_empty()
        );

        let out = engine.on_event(&event("D", Some("amy"), Some("self-harm")));
        assert_eq!(kinds(&out), [IncidentKind::Safeguarding]);

        let mut review = event("E", Some("amy"), None);
        review.kind = BlockKind::ReviewRequest;
        assert_eq!(
            kinds(&engine.on_event(&review)),
            [IncidentKind::ReviewRequest]
        );
    }

    #[test]
    fn repeats_open_one_inappropriate_incident_per_burst() {
        let mut engine = RuleEngine::new(Rules::default(), LockedCategories::required());
        let mut fired = 0;
        for n in 0..10u64 {
            let mut ev = event(&format!("R{n}"), Some("bob"), Some("games"));
            ev.time_ms += n * 1000;
            fired += engine.on_event(&ev).len();
        }
        assert_eq!(fired, 2, "5 blocks fire once; the next 5 fire again");
        // Spread beyond the window: never fires.
        let mut engine = RuleEngine::new(Rules::default(), LockedCategories::required());
        for n in 0..10u64 {
            let mut ev = event(&format!("S{n}"), Some("bob"), Some("games"));
            ev.time_ms += n * 200_000;
            assert!(engine.on_event(&ev).is_empty());
        }
    }

    #[test]
    fn auth_failures_open_access() {
        let mut engine = RuleEngine::new(Rules::default(), LockedCategories::required());
        let f = |t: u64| AuthFailure {
            time_ms: 1_700_000_000_000 + t,
            client_ip: [10, 0, 0, 9].into(),
            who: Some("year4".into()),
        };
        let opened: Vec<_> = (0..10)
            .filter_map(|t| engine.on_auth_failure(&f(t)))
            .collect();
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].kind, IncidentKind::Access);
        assert!(opened[0].description.contains("10.0.0.9"));
    }

    #[test]
    fn shared_logins_are_not_identifiable_and_name_group_ip_time() {
        let rules = Rules::default();
        let locked = LockedCategories::required();
        for who in [None, Some("year4")] {
            let i = rules
                .classify(&event("G", who, Some("extremism")), &locked)
                .expect("safeguarding");
            assert!(!i.subject.identifiable);
            assert_eq!(i.subject.who, None);
            assert!(
                i.description.contains("not identifiable"),
                "{}",
                i.description
            );
            assert!(i.description.contains("year4") && i.description.contains("10.1.4.23"));
            assert!(
                i.description.contains("2023-11-14T22:13:20Z"),
                "{}",
                i.description
            );
        }
        let i = rules
            .classify(&event("H", Some("amy"), Some("extremism")), &locked)
            .expect("safeguarding");
        assert!(i.subject.identifiable);
        assert_eq!(i.subject.who.as_deref(), Some("amy"));
    }

    #[test]
    fn many_live_keys_stay_fast_and_stale_ones_are_swept() {
        let mut w = Windows::default();
        let start = std::time::Instant::now();
        for n in 0..200_000u64 {
            w.hit(&format!("k{n}"), n, 600_000, 5);
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        // Much later, every key is stale: the next sweep empties the map.
        for n in 0..=w.sweep_at as u64 {
            w.hit(&format!("late{n}"), 10_000_000 + n, 1, 5);
        }
        assert!(w.hits.len() < 200_000, "{}", w.hits.len());
    }

    #[test]
    fn the_repeat_key_is_the_dedup_key_of_the_incident_it_opens() {
        let shared = BlockEvent {
            who: Some("year4".into()),
            ..event("R2", None, Some("games"))
        };
        let v6 = BlockEvent {
            client_ip: "fe80::1".parse().expect("v6"),
            ..event("R4", None, Some("games"))
        };
        let mut key = String::new();
        for ev in [
            event("R1", Some("j.smith"), Some("games")),
            shared,
            event("R3", None, Some("chat")),
            v6,
        ] {
            let category = ev.category.as_deref();
            repeat_key(&mut key, &ev, category.expect("category"));
            let expected = dedup_key(IncidentKind::Inappropriate, &subject_of(&ev), category);
            assert_eq!(key, expected);
        }
    }

    #[test]
    fn settings_parse_with_defaults_and_durations() {
        let rules: Rules = toml_like(r#"{"repeat_count": 3, "repeat_window": "2m"}"#);
        assert_eq!(rules.repeat_count, 3);
        assert_eq!(rules.repeat_window, Duration::from_secs(120));
        assert_eq!(rules.safeguarding, Rules::default().safeguarding);
    }

    fn toml_like(json: &str) -> Rules {
        serde_json::from_str(json).expect("rules")
    }
}
