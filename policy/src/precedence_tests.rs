//! Table-driven precedence tests: every band against every rank
//! (`testdata/precedence-cases.toml` against `testdata/precedence.toml`).
use std::collections::HashMap;

use crate::decide::{Action, ListEntryHit, ListLookup, ListMask, Rank};
use crate::policy::host_suffixes;
use crate::{CanonicalUrl, Policy};

const POLICY: &str = include_str!("../testdata/precedence.toml");
const CASES: &str = include_str!("../testdata/precedence-cases.toml");

/// A stand-in for the compiled lists: list name → domains (label-boundary suffix).
pub(crate) struct FakeLists {
    by_domain: HashMap<String, ListMask>,
}

impl FakeLists {
    pub(crate) fn new(policy: &Policy, entries: &[(&str, &str)]) -> FakeLists {
        let mut by_domain = HashMap::new();
        for (list, domain) in entries {
            let id = policy
                .lists()
                .iter()
                .find(|l| &*l.name == *list)
                .unwrap_or_else(|| panic!("{list} not referenced"))
                .id;
            *by_domain.entry(domain.to_string()).or_insert(0) |= id.bit();
        }
        FakeLists { by_domain }
    }
}

impl ListLookup for FakeLists {
    fn lookup(&self, url: &CanonicalUrl) -> ListMask {
        host_suffixes(url.host())
            .filter_map(|s| self.by_domain.get(s))
            .fold(0, |m, b| m | b)
    }
    fn matched_entries(&self, url: &CanonicalUrl) -> Vec<ListEntryHit> {
        let mut hits = Vec::new();
        for s in host_suffixes(url.host()) {
            if let Some(mask) = self.by_domain.get(s) {
                for i in 0..128u8 {
                    if mask & (1u128 << i) != 0 {
                        hits.push(ListEntryHit {
                            list: crate::ListId(i),
                            entry: s.to_string(),
                        });
                    }
                }
            }
        }
        hits
    }
}

pub(crate) fn fixture() -> (Policy, FakeLists) {
    let policy = Policy::compile("precedence.toml", POLICY)
        .unwrap_or_else(|e| panic!("fixture policy:\n{e}"));
    let lists = FakeLists::new(
        &policy,
        &[
            ("baseline:child-abuse", "locked.test"),
            ("ut1:adult", "adult.test"),
            ("ut1:social_networks", "social.test"),
            ("ut1:social_networks", "twitter.com"),
            ("ut1:social_networks", "facebook.com"),
            ("ut1:games", "games.test"),
            ("ut1:chat", "chat.test"),
            ("ut1:chat", "chat.moderated.test"),
            ("ut1:bank", "bank.test"),
        ],
    );
    (policy, lists)
}

#[derive(serde::Deserialize)]
struct Cases {
    cases: Vec<(String, String, String, String)>,
}

#[test]
fn every_band_and_every_rank() {
    let (policy, lists) = fixture();
    let cases: Cases = toml::from_str(CASES).expect("cases file parses");
    let mut failures = Vec::new();
    let mut ranks_seen = std::collections::HashSet::new();
    for (group, url, expect, rank) in &cases.cases {
        let g = policy
            .group_id(group)
            .unwrap_or_else(|| panic!("group {group}"));
        let u = CanonicalUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let v = policy.decide(g, &u, lists.lookup(&u));
        ranks_seen.insert((policy.band_of(g).name.to_string(), v.rank));
        if v.action.as_str() != expect || v.rank.as_str() != rank {
            failures.push(format!(
                "{group} {url}: expected {expect}/{rank}, got {}/{} ({:?})",
                v.action, v.rank, v.rule
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for rank in Rank::ALL {
        assert!(
            ranks_seen.iter().any(|(_, r)| *r == rank),
            "no case decided by {rank}"
        );
    }
    for band in policy.bands() {
        assert!(
            ranks_seen
                .iter()
                .any(|(b, r)| *b == *band.name && *r == Rank::Baseline),
            "band {} has no baseline case",
            band.name
        );
    }
}

#[test]
fn verdicts_point_at_the_deciding_line() {
    let (policy, lists) = fixture();
    let decide = |group: &str, url: &str| {
        let u = CanonicalUrl::parse(url).expect("url");
        policy.decide(policy.group_id(group).expect("group"), &u, lists.lookup(&u))
    };
    let v = decide("year5", "https://twitter.com/");
    assert_eq!(v.service.as_deref(), Some("twitter"));
    assert_eq!(
        v.rule.line,
        line_of("services = [\"twitter\", \"moderated-chat\"]")
    );
    let v = decide("year5", "https://www.facebook.com/");
    assert_eq!(v.category.as_deref(), Some("social"));
    assert_eq!(
        &*v.reason,
        "Social networks are not allowed for your group."
    );
    let v = decide("staff", "https://denied.test/");
    assert_eq!(v.matched.as_deref(), Some("denied.test"));
    assert_eq!(v.rule.line, line_of("domains = [\"denied.test\"]"));
    let v = decide("year1", "https://www.wikipedia.org/");
    assert_eq!(v.action, Action::Block);
    assert!(v.reason.contains("Key Stage 1"), "{}", v.reason);
}

fn line_of(needle: &str) -> u32 {
    POLICY
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle in fixture") as u32
        + 1
}

#[test]
fn allow_entries_in_the_locked_baseline_are_reported() {
    let (policy, lists) = fixture();
    let problems = policy.check_against_lists(&lists);
    let text = problems.to_string();
    assert_eq!(problems.0.len(), 1, "{text}");
    assert!(text.contains("`locked.test` has no effect"), "{text}");
    assert!(
        text.starts_with(&format!(
            "precedence.toml:{}:",
            line_of("domains = [\"locked.test\"]")
        )),
        "{text}"
    );
}

#[test]
fn explain_lists_every_step_and_the_matched_entry() {
    let (policy, lists) = fixture();
    let u = CanonicalUrl::parse("https://www.facebook.com/x").expect("url");
    let e = policy.explain(policy.group_id("year5").expect("group"), &u, &lists);
    assert_eq!(e.steps.len(), 6);
    assert_eq!(e.verdict.rank, Rank::Category);
    assert_eq!(e.verdict.matched.as_deref(), Some("facebook.com"));
    assert_eq!(e.band, "ks2");
    assert_eq!(
        e.list_entries,
        vec![(
            "ut1:social_networks".to_string(),
            "facebook.com".to_string()
        )]
    );
    assert!(e.steps[4].matched && e.steps[4].detail.contains("social"));
}

#[test]
fn subnets_most_specific_wins_and_mapped_ipv6_counts() {
    let (policy, _) = fixture();
    let name = |ip: &str| {
        policy
            .group_for_ip(ip.parse().expect("ip"))
            .map(|g| policy.group(g).name.to_string())
    };
    assert_eq!(name("10.1.4.7").as_deref(), Some("year1"));
    assert_eq!(name("10.1.9.7").as_deref(), Some("year5"));
    assert_eq!(name("::ffff:10.1.4.7").as_deref(), Some("year1"));
    assert_eq!(name("10.2.0.1"), None);
    assert_eq!(name("192.168.0.1"), None);
}

#[test]
fn no_intercept_by_domain_and_category() {
    let (policy, lists) = fixture();
    let intercept = |url: &str| {
        let u = CanonicalUrl::parse(url).expect("url");
        policy.intercept(u.host(), lists.lookup(&u))
    };
    assert!(!intercept("https://mis.school.test/"));
    assert!(!intercept("https://login.mis.school.test/"));
    assert!(!intercept("https://www.bank.test/"));
    assert!(intercept("https://www.wikipedia.org/"));
}

#[test]
fn policy_tests_run() {
    let text = format!(
        "{POLICY}\n[[test]]\nurl = \"https://twitter.com/\"\ngroup = \"year5\"\nexpect = \"allow\"\nrule = \"service\"\n\
         [[test]]\nurl = \"https://twitter.com/\"\ngroup = \"year1\"\nexpect = \"allow\"\n"
    );
    let policy = Policy::compile("p.toml", &text).expect("compiles");
    let (_, lists) = fixture();
    let lists = FakeLists {
        by_domain: lists.by_domain,
    };
    let out = policy.run_tests(&lists);
    assert!(out[0].passed);
    assert!(
        !out[1].passed,
        "KS1 is allowlist-only, so twitter must be blocked"
    );
}

/// Every compile error, each located: (snippet to replace, replacement, expected message part, line).
#[test]
fn compile_errors_are_located() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "block = [\"adult\", \"social\", \"games\", \"chat\"]",
            "block = [\"adult\", \"socail\"]",
            "unknown category `socail`: known categories are adult, bank, chat, games, social",
        ),
        (
            "services = [\"twitter\", \"moderated-chat\"]",
            "services = [\"twiter\"]",
            "unknown service `twiter`",
        ),
        (
            "year8 = { band = \"ks3\" }",
            "year8 = { band = \"ks9\" }",
            "unknown band `ks9`: known bands are ks1, ks2, ks3, sixth, staff",
        ),
        (
            "ages = \"7-10\"",
            "ages = \"6-10\"",
            "band `ks2` (ages 6-10) overlaps band `ks1` (ages 4-6)",
        ),
        (
            "ages = \"7-10\"",
            "ages = \"seven\"",
            "expected an age range like `7-10` or `18+`, found `seven`",
        ),
        (
            "terrorism = [\"baseline:terrorism\"]\n",
            "",
            "the locked baseline must keep `terrorism`",
        ),
        (
            "[categories.games]",
            "[categories.games]\nreasn = 1",
            "unknown field `reasn`",
        ),
        (
            "cidr = \"10.1.4.0/24\"",
            "cidr = \"10.1.4.1/24\"",
            "has host bits set: did you mean `10.1.4.0/24`?",
        ),
        (
            "group = \"year1\"",
            "group = \"year0\"",
            "unknown group `year0`",
        ),
        (
            "keywords = [\"badword\"]",
            "keywords = [\"badword\", \"badword\"]",
            "`badword` is listed twice in [deny]",
        ),
        (
            "block = [\"adult\"]\nservices = [\"twitter\", \"facebook\"]",
            "block = [\"adult\", \"terrorism\"]\nservices = [\"twitter\", \"facebook\"]",
            "`terrorism` is in the locked baseline",
        ),
        (
            "domains = [\"denied.test\"]",
            "domains = [\"denied.test\", \"bad host.test\"]",
            "`bad host.test` is not a valid domain",
        ),
        (
            "urls = [\"games.test/maths\"]",
            "urls = [\"games.test/maths\"]\ndomains2 = 1",
            "unknown field `domains2`",
        ),
        (
            "[allow]\ndomains = [\"locked.test\"]",
            "[allow]\ndomains = [\"locked.test\", \"denied.test\"]",
            "allow entry `denied.test` has no effect: the same entry is denied",
        ),
        // A list name is a path component under its source: it must not climb out.
        (
            "lists = [\"ut1:games\"]",
            "lists = [\"ut1:../games\"]",
            "list reference `ut1:../games` must be",
        ),
        (
            "lists = [\"ut1:games\"]",
            "lists = [\"ut1:a/b\"]",
            "list reference `ut1:a/b` must be",
        ),
    ];
    for (from, to, expect) in cases {
        assert!(POLICY.contains(from), "fixture lacks {from:?}");
        let text = POLICY.replacen(from, to, 1);
        let err = Policy::compile("p.toml", &text)
            .expect_err(expect)
            .to_string();
        assert!(err.contains(expect), "expected {expect:?} in:\n{err}");
        assert!(
            err.starts_with("p.toml:")
                && err
                    .split(':')
                    .nth(1)
                    .is_some_and(|l| l.parse::<u32>().is_ok()),
            "{err}"
        );
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = POLICY
        .replace(
            "services = [\"twitter\", \"moderated-chat\"]",
            "services = [\"nope\"]",
        )
        .replace("year8 = { band = \"ks3\" }", "year8 = { band = \"ks9\" }");
    let err = Policy::compile("p.toml", &text).expect_err("two problems");
    assert_eq!(err.0.len(), 2, "{err}");
}

/// A group id remembered from one policy is used only where the policy at hand
/// gives it the same name; otherwise the name is looked up.
#[test]
fn a_remembered_group_id_is_checked_against_the_name() {
    let policy = Policy::compile("precedence.toml", POLICY).expect("compiles");
    let names: Vec<&str> = policy.groups().iter().map(|g| &*g.name).collect();
    assert!(names.len() >= 2, "{names:?}");
    let first = policy.group_id(names[0]).expect("first group");
    let second = policy.group_id(names[1]).expect("second group");
    assert_eq!(policy.group_id_hinted(names[0], Some(first)), Some(first));
    // A stale hint (another group's id after a reload) is not believed.
    assert_eq!(policy.group_id_hinted(names[0], Some(second)), Some(first));
    assert_eq!(policy.group_id_hinted(names[1], None), Some(second));
    // Nor is an id past the end of this policy's groups, nor an unknown name.
    assert_eq!(
        policy.group_id_hinted(names[1], Some(crate::policy::GroupId(u16::MAX))),
        Some(second)
    );
    assert_eq!(policy.group_id_hinted("no-such-group", Some(first)), None);
}
