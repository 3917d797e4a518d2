//! Filter-check records and report aggregates, on SQLite and on the real
//! PostgreSQL (see `support`): the numbers a termly report prints come from
//! these queries, so each is checked against a seeded store.
use std::net::IpAddr;

use incidents::{
    Actor, FilterCheckResult, LockedCategories, NewFilterCheck, Role, RuleEngine, Rules, Store,
};
use policy::event::{BlockEvent, BlockKind};

mod support;
use support::{TestStore, both};

const DAY: u64 = 86_400_000;
const T0: u64 = 1_763_900_000_000; // 2025-11-23

fn block(reference: &str, group: &str, category: Option<&str>, t: u64) -> BlockEvent {
    BlockEvent {
        reference: reference.into(),
        time_ms: t,
        client_ip: IpAddr::from([10, 1, 4, 23]),
        who: None,
        group: group.into(),
        band: "ks2".into(),
        method: "GET".into(),
        url: format!("https://site.test/{reference}"),
        category: category.map(String::from),
        rule: Some("category policy.toml:14:1".into()),
        kind: BlockKind::Policy,
    }
}

fn result(group: &str, kind: &str, category: &str, pass: bool) -> FilterCheckResult {
    FilterCheckResult {
        group: group.into(),
        band: "ks2".into(),
        kind: kind.into(),
        category: category.into(),
        url: format!("http://{category}.test/"),
        expected: "blocked".into(),
        outcome: if pass { "blocked" } else { "allowed" }.into(),
        status: Some(if pass { 403 } else { 200 }),
        pass,
        detail: "Hallpass-Verdict: block".into(),
    }
}

fn check(started_ms: u64, results: Vec<FilterCheckResult>) -> NewFilterCheck {
    let failures = results.iter().filter(|r| !r.pass).count() as u64;
    NewFilterCheck {
        started_ms,
        finished_ms: started_ms + 2_000,
        ran_by: "tech".into(),
        proxy: "127.0.0.1:3128".into(),
        suite: "config/primary/filter-check.toml".into(),
        policy: "config/primary/policy.toml".into(),
        probes: results.len() as u64,
        failures,
        under_blocked: failures,
        over_blocked: 0,
        errors: 0,
        passed: failures == 0,
        results,
    }
}

#[test]
fn filter_checks_are_stored_with_every_result_and_listed_newest_first() {
    both("filter_checks", |mut t: TestStore| {
        let s = &mut t.store;
        let good = check(
            T0,
            vec![
                result("year4", "block", "social", true),
                result("year4", "baseline", "child-abuse", true),
            ],
        );
        let bad = check(
            T0 + DAY,
            vec![
                result("year4", "block", "social", false),
                result("year5", "block", "games", true),
                result("year5", "block", "adult\0nul", true),
            ],
        );
        let first = s.record_filter_check(&good).expect("record");
        let second = s.record_filter_check(&bad).expect("record");
        assert!(second > first, "{}", t.engine);

        let listed = s.filter_checks(0, u64::MAX, 10).expect("list");
        assert_eq!(
            listed.iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![second, first],
            "{}",
            t.engine
        );
        assert!(listed.iter().all(|c| c.check.results.is_empty()));
        assert_eq!(listed[0].check.failures, 1);
        assert!(!listed[0].check.passed && listed[1].check.passed);
        // The period is half-open and the limit holds.
        assert_eq!(
            s.filter_checks(T0 + 1, u64::MAX, 10).expect("list").len(),
            1
        );
        assert_eq!(s.filter_checks(0, T0 + DAY, 10).expect("list")[0].id, first);
        assert_eq!(s.filter_checks(0, u64::MAX, 1).expect("list")[0].id, second);

        let full = s.filter_check(second).expect("get").expect("stored");
        assert_eq!(full.check.results.len(), 3, "{}", t.engine);
        assert_eq!(full.check.results[0], bad.results[0]);
        assert_eq!(full.check.results[1], bad.results[1]);
        assert_eq!(full.check.ran_by, "tech");
        assert_eq!(full.check.finished_ms, T0 + DAY + 2_000);
        assert_eq!(s.filter_check(second + 100).expect("get"), None);

        // Survives a reopen (the schema is migrated once, the rows stay).
        let mut again = (t.reopen)();
        assert_eq!(again.filter_checks(0, u64::MAX, 10).expect("list").len(), 2);
        assert!(
            again
                .record_filter_check(&NewFilterCheck {
                    ran_by: " ".into(),
                    ..good.clone()
                })
                .is_err(),
            "a run nobody ran is refused"
        );
    });
}

/// Seeds a period: blocks in two groups and categories, a review request (not
/// a block), and an event just outside each edge of the period.
fn seed_blocks(s: &mut Store) {
    let events = vec![
        block("a1", "year4", Some("social"), T0),
        block("a2", "year4", Some("social"), T0 + DAY),
        block("a3", "year4", Some("games"), T0 + 2 * DAY),
        block("a4", "year5", Some("social"), T0 + 3 * DAY),
        block("a5", "year5", None, T0 + 3 * DAY),
        BlockEvent {
            kind: BlockKind::ReviewRequest,
            ..block("a6", "year5", Some("social"), T0 + 3 * DAY)
        },
        block("before", "year4", Some("social"), T0 - 1),
        block("after", "year4", Some("social"), T0 + 7 * DAY),
    ];
    s.write_events(&events, T0).expect("events");
}

#[test]
fn blocks_are_counted_by_group_and_category_within_the_period() {
    both("block_counts", |mut t: TestStore| {
        let s = &mut t.store;
        seed_blocks(s);
        let counts = s.block_counts(T0, T0 + 7 * DAY).expect("counts");
        let got: Vec<(String, String, u64)> = counts
            .into_iter()
            .map(|c| (c.group, c.category, c.count))
            .collect();
        assert_eq!(
            got,
            vec![
                ("year4".into(), "games".into(), 1),
                ("year4".into(), "social".into(), 2),
                ("year5".into(), "".into(), 1),
                ("year5".into(), "social".into(), 1),
            ],
            "{}",
            t.engine
        );
        assert!(
            s.block_counts(T0 + 8 * DAY, T0 + 9 * DAY)
                .expect("counts")
                .is_empty()
        );
    });
}

#[test]
fn incidents_opened_and_closed_with_time_to_close() {
    both("closures", |mut t: TestStore| {
        let s = &mut t.store;
        let mut rules = RuleEngine::new(Rules::default(), LockedCategories::required());
        // Two illegal incidents (locked baseline), opened a day apart.
        for (i, at) in [(1, T0), (2, T0 + DAY)] {
            let mut ev = block(&format!("b{i}"), "year4", Some("child-abuse"), at);
            ev.rule = Some("baseline policy.toml:3:1".into());
            ev.who = Some(format!("pupil{i}"));
            s.record(&[ev], &[], &mut rules, at).expect("record");
        }
        let dsl = Actor::new("dana", Role::SafeguardingLead);
        let numbers: Vec<u64> = s
            .incidents(&Default::default(), &dsl, T0)
            .expect("incidents")
            .iter()
            .map(|i| i.number)
            .collect();
        assert_eq!(numbers.len(), 2, "{}", t.engine);
        let (second, first) = (numbers[0], numbers[1]);
        // The first: closed after 3 days, reopened, closed again on day 5.
        s.record_review(first, &dsl, "seen", &[], None, T0 + DAY)
            .expect("review");
        s.close(first, &dsl, None, T0 + 3 * DAY).expect("close");
        s.reopen(first, &dsl, "more", T0 + 4 * DAY).expect("reopen");
        s.record_review(first, &dsl, "seen again", &[], None, T0 + 4 * DAY)
            .expect("review");
        s.close(first, &dsl, None, T0 + 5 * DAY).expect("close");
        // The second: still open.
        s.record_review(second, &dsl, "seen", &[], None, T0 + 2 * DAY)
            .expect("review");

        let opened = s.incidents_opened(T0, T0 + 7 * DAY).expect("opened");
        assert_eq!(opened.len(), 1, "{}", t.engine);
        assert_eq!((opened[0].kind.as_str(), opened[0].count), ("illegal", 2));
        assert_eq!(
            s.incidents_opened(T0 + 1, T0 + 7 * DAY).expect("opened")[0].count,
            1
        );

        let closed = s.incidents_closed(T0, T0 + 7 * DAY).expect("closed");
        assert_eq!(closed.len(), 1, "{}", t.engine);
        assert_eq!(closed[0].number, first);
        assert_eq!(closed[0].time_to_close_ms(), 5 * DAY);
        // The last close is what counts: a period holding only the first close
        // does not list it.
        assert!(
            s.incidents_closed(T0, T0 + 4 * DAY)
                .expect("closed")
                .is_empty()
        );
    });
}

#[test]
fn the_period_report_compares_with_the_previous_period_and_renders_every_format() {
    use incidents::period_report::{HistorySource, PeriodReport, PolicyChange, PolicyHistory};
    both("period_report", |mut t: TestStore| {
        let s = &mut t.store;
        seed_blocks(s);
        // The previous period (7 days before T0): one social block for year4.
        s.write_events(&[block("p1", "year4", Some("social"), T0 - 3 * DAY)], T0)
            .expect("events");
        s.record_filter_check(&check(
            T0 + DAY,
            vec![result("year4", "block", "social", false)],
        ))
        .expect("check");
        s.record_filter_check(&check(
            T0 - DAY,
            vec![result("year4", "block", "social", true)],
        ))
        .expect("check before the period");
        let history = PolicyHistory {
            source: HistorySource::Git,
            changes: vec![PolicyChange {
                at_ms: T0 + 2 * DAY,
                file: "config/primary/policy.toml".into(),
                who: Some("Tech <b>".into()),
                summary: "=allow scratch".into(),
            }],
        };
        let r = PeriodReport::build(
            s,
            "Example <Primary>",
            T0,
            T0 + 7 * DAY,
            T0 + 7 * DAY,
            history,
        )
        .expect("report");
        assert_eq!(r.previous_since_ms, T0 - 7 * DAY);
        assert_eq!(
            (r.blocks_total, r.blocks_previous_total),
            (5, 2),
            "{}",
            t.engine
        );
        let social4 = r
            .blocks
            .iter()
            .find(|b| b.group == "year4" && b.category == "social")
            .expect("row");
        // T0 - 1 ("before") and T0 - 3 days fall in the previous period.
        assert_eq!((social4.count, social4.previous), (2, 2));
        assert_eq!(r.blocks[0].count, 2, "busiest first");
        assert_eq!(r.filter_checks.len(), 1);
        assert!(!r.filter_checks[0].check.passed);

        let csv = r.to_csv();
        assert!(csv.contains("blocks,year4,social,2,2\n"), "{csv}");
        assert!(csv.contains("blocks,year5,(no category),1,0\n"), "{csv}");
        assert!(csv.contains("blocks-total,,,5,2\n"), "{csv}");
        assert!(
            csv.contains(",'=allow scratch,"),
            "formula cells defused: {csv}"
        );
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
        assert_eq!(json["blocks_total"], 5);
        assert_eq!(json["policy"]["source"], "git");
        let html = r.to_html();
        assert!(html.contains("Example &lt;Primary&gt;") && !html.contains("<Primary>"));
        assert!(html.contains("Tech &lt;b&gt;"));
        assert!(
            html.contains("FAILED"),
            "the failed filter check shows in words"
        );
        assert!(html.contains("@page{size:A4") && !html.contains("<script"));
        assert!(html.contains("+150%"), "5 blocks against 2: {html}");
    });
}
