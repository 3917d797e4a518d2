//! The compiled policy: parse → validate → freeze.
//!
//! In: the text of one policy file and its name. Out: a [`Policy`] that cannot hold
//! an invalid state, or every problem at once as `file:line:col: message`.
//! Refused: unknown keys, unknown categories, services, bands or groups, missing
//! locked-baseline categories, overlapping age bands, entries that do not
//! canonicalise, duplicate entries, an allow entry that a deny entry of the same
//! scope already overrides, more than [`ListId::MAX`] lists.
//!
//! Checks that need the list contents (an allow entry that a locked list contains)
//! are in [`Policy::check_against_lists`], because this crate never reads lists.
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use aho_corasick::AhoCorasick;

use crate::decide::{
    Action, Explanation, ListEntryHit, ListId, ListLookup, ListMask, Rank, Step, Verdict,
};
use crate::host::{self, CanonicalHost};
use crate::model::{RawBand, RawEntries, RawPolicy, SString};
use crate::source::{Location, Problems};
use crate::url::{CanonicalUrl, Scheme};

/// The only policy format version this build reads.
pub const POLICY_VERSION: u32 = 1;

/// The locked-baseline categories every policy must feed. A policy may add more
/// locked categories; it can never remove one of these.
pub const REQUIRED_BASELINE: [&str; 4] = ["child-abuse", "terrorism", "malware", "phishing"];

/// A group's index in its policy.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupId(pub(crate) u16);

/// A list the policy references, numbered for the matcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRef {
    /// Its number.
    pub id: ListId,
    /// `source:list`, e.g. `ut1:adult`.
    pub name: Arc<str>,
    /// The source part (a `[lists.<source>]` table of the main config).
    pub source: Arc<str>,
    /// The list part (a category folder or file inside the source).
    pub list: Arc<str>,
    /// Where it is first referenced.
    pub at: Location,
}

/// A category: a name, the lists that feed it, and words for the block page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Category {
    /// e.g. `adult`.
    pub name: Arc<str>,
    /// Pupil-facing reason, e.g. "this site is for adults".
    pub reason: Arc<str>,
    /// Whether this is a locked-baseline category.
    pub locked: bool,
    /// Lists feeding it.
    pub mask: ListMask,
    /// Where it is defined.
    pub at: Location,
}

/// YouTube restricted mode.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum YoutubeMode {
    /// No restriction.
    Off,
    /// `YouTube-Restrict: Moderate`.
    Moderate,
    /// `YouTube-Restrict: Strict`.
    Strict,
}

/// An age band.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Band {
    /// e.g. `ks2`.
    pub name: Arc<str>,
    /// Human label, e.g. "Key Stage 2".
    pub label: Arc<str>,
    /// Inclusive age range (age on 1 September); `None` upper bound means "and older".
    pub ages: (u8, Option<u8>),
    /// The band's default for requests no rule decides.
    pub default: Action,
    /// Force SafeSearch on search engines.
    pub safe_search: bool,
    /// YouTube restricted mode.
    pub youtube: YoutubeMode,
}

/// A group (a year-group login, `staff`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// e.g. `year4`.
    pub name: Arc<str>,
    /// Human label, e.g. "Year 4".
    pub label: Arc<str>,
    /// The band's name.
    pub band: Arc<str>,
    /// Where it is defined.
    pub at: Location,
}

/// An approved service: a named set of hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// e.g. `twitter`.
    pub name: Arc<str>,
    /// Canonical hosts (label-boundary suffix match).
    pub hosts: Vec<Arc<str>>,
    /// Where it is defined.
    pub at: Location,
}

/// A `[[test]]` of the policy file: run by `hallpass check` and CI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyTest {
    /// The URL to decide.
    pub url: String,
    /// The group to decide it for.
    pub group: String,
    /// The expected action.
    pub expect: Action,
    /// Optionally, the expected deciding rank.
    pub rank: Option<Rank>,
    /// Where the test is.
    pub at: Location,
}

/// The outcome of one `[[test]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestOutcome {
    /// The test.
    pub test: PolicyTest,
    /// The verdict it got (or why it could not be decided).
    pub got: Result<Verdict, String>,
    /// Whether it passed.
    pub passed: bool,
}

/// A `[[subnets]]` mapping: client addresses to a group.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Subnet {
    net: IpAddr,
    prefix: u8,
    group: GroupId,
}

/// One explicit entry (allow, deny) as written, for explain and check.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// Canonical text of the entry (`example.com`, `example.com/path`, `keyword`).
    text: Arc<str>,
    kind: EntryKind,
    /// `[allow]` or `[bands.ks1.allow]` etc.
    scope: Arc<str>,
    at: Location,
}

/// What kind of explicit entry.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum EntryKind {
    Domain,
    Url,
    Keyword,
}

/// A URL-prefix entry: a canonical host plus a normalised path (and optional query) prefix.
#[derive(Clone, Debug)]
struct UrlPrefix {
    path: Box<str>,
    query: Option<Box<str>>,
    entry: usize,
}

impl UrlPrefix {
    /// Path-segment boundary match: `/foo` matches `/foo`, `/foo/x`; not `/foobar`.
    fn matches(&self, url: &CanonicalUrl) -> bool {
        let path = url.path();
        let path_ok = path == &*self.path
            || (path.starts_with(&*self.path)
                && (self.path.ends_with('/')
                    || path.as_bytes().get(self.path.len()) == Some(&b'/')));
        match &self.query {
            None => path_ok,
            Some(q) => {
                path == &*self.path && url.query().is_some_and(|have| have.starts_with(&**q))
            }
        }
    }
}

/// A compiled set of explicit entries (one band's allow or deny, with the global ones).
#[derive(Debug, Default)]
struct EntrySet {
    entries: Vec<Entry>,
    domains: HashMap<Box<str>, usize>,
    urls: HashMap<Box<str>, Vec<UrlPrefix>>,
    keywords: Option<(AhoCorasick, Vec<usize>)>,
}

impl EntrySet {
    /// The first entry that matches the request, if any: domains, then URL prefixes
    /// (most specific host first), then keywords.
    fn find(&self, url: &CanonicalUrl) -> Option<&Entry> {
        // Most bands have no `[allow]` or `[deny]` of their own: nothing to walk.
        if self.entries.is_empty() {
            return None;
        }
        for suffix in host_suffixes(url.host()) {
            if let Some(&i) = self.domains.get(suffix) {
                return Some(&self.entries[i]);
            }
            if let Some(prefixes) = self.urls.get(suffix) {
                if let Some(p) = prefixes.iter().find(|p| p.matches(url)) {
                    return Some(&self.entries[p.entry]);
                }
            }
        }
        let (automaton, ids) = self.keywords.as_ref()?;
        let text = url.keyword_text();
        automaton
            .find_overlapping_iter_word(&text)
            .map(|pattern| &self.entries[ids[pattern]])
            .next()
    }
}

/// Word-boundary keyword search (a keyword `bet` must not match `alphabet`).
trait WordSearch {
    fn find_overlapping_iter_word<'t>(
        &'t self,
        text: &'t str,
    ) -> Box<dyn Iterator<Item = usize> + 't>;
}

impl WordSearch for AhoCorasick {
    fn find_overlapping_iter_word<'t>(
        &'t self,
        text: &'t str,
    ) -> Box<dyn Iterator<Item = usize> + 't> {
        let bytes = text.as_bytes();
        let is_word = |b: u8| b.is_ascii_alphanumeric() || b >= 0x80;
        Box::new(self.find_overlapping_iter(text).filter_map(move |m| {
            let before_ok = m.start() == 0 || !is_word(bytes[m.start() - 1]);
            let after_ok = m.end() == bytes.len() || !is_word(bytes[m.end()]);
            (before_ok && after_ok).then(|| m.pattern().as_usize())
        }))
    }
}

/// A band's rules, with the global `[allow]`/`[deny]` merged in.
#[derive(Debug)]
struct BandRules {
    band: Band,
    deny: EntrySet,
    allow: EntrySet,
    /// Service host → (service index, where the band approves it).
    services: HashMap<Box<str>, (usize, Location)>,
    /// Blocked categories in the order written, with where.
    block: Vec<(usize, Location)>,
    block_mask: ListMask,
    default_at: Location,
}

/// A compiled, validated policy.
#[derive(Debug)]
pub struct Policy {
    file: Arc<str>,
    school: Option<Arc<str>>,
    lists: Vec<ListRef>,
    baseline: Vec<Category>,
    baseline_mask: ListMask,
    categories: Vec<Category>,
    services: Vec<Service>,
    bands: Vec<BandRules>,
    groups: Vec<Group>,
    group_band: Vec<usize>,
    group_index: HashMap<Arc<str>, GroupId>,
    subnets: Vec<Subnet>,
    no_intercept: HashSet<Box<str>>,
    no_intercept_mask: ListMask,
    tests: Vec<PolicyTest>,
}

/// Iterates a host and each parent at label boundaries (`a.b.c`, `b.c`, `c`);
/// an IP literal yields only itself.
pub fn host_suffixes(host: &CanonicalHost) -> impl Iterator<Item = &str> {
    let text = host.as_str();
    // An IP literal is not searched for dots at all.
    let parents = if host.ip().is_none() { text } else { "" };
    std::iter::once(text).chain(
        parents
            .match_indices('.')
            .map(move |(i, _)| &parents[i + 1..]),
    )
}

/// Parses `4-6`, `7`, `18+` into an inclusive age range.
fn parse_ages(text: &str) -> Result<(u8, Option<u8>), String> {
    let bad = || format!("expected an age range like `7-10` or `18+`, found `{text}`");
    let num = |s: &str| -> Result<u8, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<u8>().map_err(|_| bad())
    };
    let text = text.trim();
    if let Some(from) = text.strip_suffix('+') {
        return Ok((num(from)?, None));
    }
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(format!("age range `{text}` runs backwards"));
            }
            Ok((a, Some(b)))
        }
        None => {
            let a = num(text)?;
            Ok((a, Some(a)))
        }
    }
}

fn ranges_overlap(a: (u8, Option<u8>), b: (u8, Option<u8>)) -> bool {
    let a_hi = a.1.unwrap_or(u8::MAX);
    let b_hi = b.1.unwrap_or(u8::MAX);
    a.0 <= b_hi && b.0 <= a_hi
}

/// Parses `10.1.4.0/24` or `fd00::/64`; host bits must be zero (otherwise the
/// technician probably meant a different network, so it is refused, not guessed).
fn parse_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = text
        .split_once('/')
        .ok_or_else(|| format!("expected a network like `10.1.4.0/24`, found `{text}`"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = len
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("prefix length `{len}` must be 0..={max}"))?;
    if mask_addr(addr, prefix) != addr {
        return Err(format!(
            "`{text}` has host bits set: did you mean `{}/{prefix}`?",
            mask_addr(addr, prefix)
        ));
    }
    Ok((addr, prefix))
}

fn mask_addr(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// The built-in pupil-facing reason for a locked category.
fn baseline_reason(name: &str) -> &'static str {
    match name {
        "malware" => "This site could harm your computer, so it is blocked for everyone.",
        "phishing" => {
            "This site tries to trick people into giving away passwords, so it is blocked for everyone."
        }
        _ => "This site is blocked for everyone, to keep people safe.",
    }
}

/// Compilation state: the source text and the problems found so far.
struct Compiler<'t> {
    file: Arc<str>,
    text: &'t str,
    problems: Problems,
    lists: Vec<ListRef>,
    list_index: HashMap<String, ListId>,
}

impl<'t> Compiler<'t> {
    fn at(&self, span: std::ops::Range<usize>) -> Location {
        Location::at_offset(&self.file, self.text, span.start)
    }

    fn problem(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        let at = self.at(span);
        self.problems.push(at, message);
    }

    /// Numbers a `source:list` reference.
    fn list_ref(&mut self, r: &SString) -> Option<ListId> {
        let name = r.get_ref().trim();
        let Some((source, list)) = name.split_once(':') else {
            self.problem(
                r.span(),
                format!("expected a list reference like `ut1:adult`, found `{name}`"),
            );
            return None;
        };
        // A list name becomes a path component under its source: letters, digits,
        // `-`, `_` and inner dots only, so it can never climb out of the source.
        let valid = |s: &str| {
            !s.starts_with('.')
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        };
        if !crate::config::valid_source_name(source)
            || list.is_empty()
            || !valid(list)
            || list.contains("..")
        {
            self.problem(
                r.span(),
                format!("list reference `{name}` must be `source:list` with lower-case letters, digits, `-`, `_`"),
            );
            return None;
        }
        if let Some(id) = self.list_index.get(name) {
            return Some(*id);
        }
        if self.lists.len() >= ListId::MAX {
            self.problem(
                r.span(),
                format!(
                    "too many lists: a policy may reference at most {}",
                    ListId::MAX
                ),
            );
            return None;
        }
        let id = ListId(self.lists.len() as u8);
        let at = self.at(r.span());
        self.lists.push(ListRef {
            id,
            name: name.into(),
            source: source.into(),
            list: list.into(),
            at,
        });
        self.list_index.insert(name.to_string(), id);
        Some(id)
    }

    fn category(
        &mut self,
        name: &str,
        lists: &[SString],
        reason: Arc<str>,
        locked: bool,
        at: Location,
    ) -> Category {
        let mut mask = 0;
        for r in lists {
            if let Some(id) = self.list_ref(r) {
                mask |= id.bit();
            }
        }
        Category {
            name: name.into(),
            reason,
            locked,
            mask,
            at,
        }
    }

    /// Canonicalises a domain entry, or records why not.
    fn domain(&mut self, s: &SString) -> Option<String> {
        match host::canonicalize(s.get_ref().trim()) {
            Ok(h) => Some(h.as_str().to_string()),
            Err(e) => {
                self.problem(
                    s.span(),
                    format!("`{}` is not a valid domain: {e}", s.get_ref()),
                );
                None
            }
        }
    }

    /// Canonicalises a `host/path[?query]` entry.
    fn url_prefix(&mut self, s: &SString) -> Option<(String, String, Option<String>)> {
        let raw = s.get_ref().trim();
        let raw = raw
            .strip_prefix("https://")
            .or_else(|| raw.strip_prefix("http://"))
            .unwrap_or(raw);
        let Some(slash) = raw.find('/') else {
            self.problem(
                s.span(),
                format!("`{raw}` has no path: put whole domains in `domains`, URL prefixes look like `example.com/path`"),
            );
            return None;
        };
        match CanonicalUrl::from_parts(Scheme::Https, &raw[..slash], &raw[slash..]) {
            Ok(u) => Some((
                u.host().as_str().to_string(),
                u.path().to_string(),
                u.query().map(str::to_string),
            )),
            Err(e) => {
                self.problem(s.span(), format!("`{raw}` is not a valid URL prefix: {e}"));
                None
            }
        }
    }

    /// Compiles explicit entries into `set`, tagging them with `scope`.
    fn entries(&mut self, set: &mut EntrySet, raw: &RawEntries, scope: &str) {
        let scope: Arc<str> = scope.into();
        let mut seen: HashSet<String> = set.entries.iter().map(|e| e.text.to_string()).collect();
        let mut push = |this: &mut Self,
                        set: &mut EntrySet,
                        text: String,
                        kind: EntryKind,
                        s: &SString|
         -> Option<usize> {
            if !seen.insert(text.clone()) {
                this.problem(s.span(), format!("`{text}` is listed twice in {scope}"));
                return None;
            }
            set.entries.push(Entry {
                text: text.into(),
                kind,
                scope: scope.clone(),
                at: this.at(s.span()),
            });
            Some(set.entries.len() - 1)
        };
        for d in &raw.domains {
            if let Some(text) = self.domain(d) {
                if let Some(i) = push(self, set, text.clone(), EntryKind::Domain, d) {
                    set.domains.insert(text.into(), i);
                }
            }
        }
        for u in &raw.urls {
            if let Some((host, path, query)) = self.url_prefix(u) {
                let text = match &query {
                    Some(q) => format!("{host}{path}?{q}"),
                    None => format!("{host}{path}"),
                };
                if let Some(i) = push(self, set, text, EntryKind::Url, u) {
                    set.urls.entry(host.into()).or_default().push(UrlPrefix {
                        path: path.into(),
                        query: query.map(Into::into),
                        entry: i,
                    });
                }
            }
        }
        for k in &raw.keywords {
            let kw = k.get_ref().trim().to_lowercase();
            if kw.is_empty() {
                self.problem(k.span(), "a keyword must not be empty");
                continue;
            }
            push(self, set, kw, EntryKind::Keyword, k);
        }
    }
}

fn finish_keywords(set: &mut EntrySet, keyword_entries: &[usize]) {
    if keyword_entries.is_empty() {
        return;
    }
    let patterns: Vec<&str> = keyword_entries
        .iter()
        .map(|&i| &*set.entries[i].text)
        .collect();
    // Keywords come from the policy file (tens, not millions) and were checked to be
    // non-empty, so building the automaton cannot exceed its limits.
    let automaton = AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::Standard)
        .build(patterns)
        .expect("a few non-empty keywords always build an automaton");
    set.keywords = Some((automaton, keyword_entries.to_vec()));
}

impl Policy {
    /// Parses and validates a policy file. `file` names it in every problem.
    pub fn compile(file: &str, text: &str) -> Result<Policy, Problems> {
        let file: Arc<str> = file.into();
        let raw: RawPolicy =
            toml::from_str(text).map_err(|e| crate::config::toml_problem(&file, text, &e))?;
        let mut c = Compiler {
            file: file.clone(),
            text,
            problems: Problems::default(),
            lists: Vec::new(),
            list_index: HashMap::new(),
        };

        if *raw.version.get_ref() != POLICY_VERSION {
            c.problem(
                raw.version.span(),
                format!(
                    "unsupported policy version {}: this build reads version {POLICY_VERSION}",
                    raw.version.get_ref()
                ),
            );
        }

        // Locked baseline: the four required categories, plus any the school adds.
        let mut baseline = Vec::new();
        for required in REQUIRED_BASELINE {
            if !raw.baseline.get_ref().contains_key(required) {
                c.problem(
                    raw.baseline.span(),
                    format!("the locked baseline must keep `{required}`: lists may be added to it, never removed"),
                );
            }
        }
        for (name, lists) in raw.baseline.get_ref() {
            let at = c.at(lists.span());
            if lists.get_ref().is_empty() {
                c.problem(
                    lists.span(),
                    format!("locked category `{name}` needs at least one list"),
                );
            }
            baseline.push(c.category(
                name,
                lists.get_ref(),
                baseline_reason(name).into(),
                true,
                at,
            ));
        }
        // Required categories first, in their documented order.
        baseline.sort_by_key(|cat| {
            REQUIRED_BASELINE
                .iter()
                .position(|r| **r == *cat.name)
                .unwrap_or(usize::MAX)
        });
        let baseline_mask = baseline.iter().fold(0, |m, cat| m | cat.mask);

        let mut categories = Vec::new();
        for (name, cat) in &raw.categories {
            let at = c.at(cat.span());
            if raw.baseline.get_ref().contains_key(name) {
                c.problem(
                    cat.span(),
                    format!(
                        "category `{name}` is a locked-baseline category and cannot be redefined"
                    ),
                );
                continue;
            }
            if cat.get_ref().lists.is_empty() {
                c.problem(
                    cat.span(),
                    format!("category `{name}` needs at least one list"),
                );
            }
            let reason = cat
                .get_ref()
                .reason
                .clone()
                .unwrap_or_else(|| "This site is not allowed for your group.".to_string());
            categories.push(c.category(name, &cat.get_ref().lists, reason.into(), false, at));
        }
        let category_index: HashMap<&str, usize> = categories
            .iter()
            .enumerate()
            .map(|(i, cat)| (&*cat.name, i))
            .collect();

        let mut services = Vec::new();
        for (name, hosts) in &raw.services {
            let at = c.at(hosts.span());
            let mut canon = Vec::new();
            for h in hosts.get_ref() {
                if let Some(d) = c.domain(h) {
                    canon.push(Arc::<str>::from(d));
                }
            }
            if canon.is_empty() && hosts.get_ref().is_empty() {
                c.problem(
                    hosts.span(),
                    format!("service `{name}` needs at least one domain"),
                );
            }
            services.push(Service {
                name: name.as_str().into(),
                hosts: canon,
                at,
            });
        }
        let service_index: HashMap<&str, usize> = services
            .iter()
            .enumerate()
            .map(|(i, s)| (&*s.name, i))
            .collect();

        // Global explicit entries are compiled once to validate them; each band
        // merges them after its own (a band's own entry is the more specific reason).
        let mut global_deny = EntrySet::default();
        c.entries(&mut global_deny, &raw.deny, "[deny]");
        let mut global_allow = EntrySet::default();
        c.entries(&mut global_allow, &raw.allow, "[allow]");
        report_allow_deny_overlap(&mut c, &global_allow, &global_deny);

        let mut bands = Vec::new();
        let mut band_index: HashMap<&str, usize> = HashMap::new();
        for (name, band) in &raw.bands {
            if !crate::config::valid_source_name(name) {
                c.problem(
                    band.span(),
                    format!("band name `{name}` must be lower-case letters, digits, `-` or `_`"),
                );
            }
            let compiled = compile_band(
                &mut c,
                name,
                band.get_ref(),
                &raw,
                [&global_deny, &global_allow],
                &category_index,
                &categories,
                &service_index,
                &services,
            );
            if let Some(compiled) = compiled {
                band_index.insert(name, bands.len());
                bands.push(compiled);
            }
        }
        // Overlapping age bands would make "which band is a 7-year-old in?" ambiguous.
        for (i, (a_name, a)) in raw.bands.iter().enumerate() {
            for (b_name, b) in raw.bands.iter().skip(i + 1) {
                if let (Ok(ra), Ok(rb)) = (
                    parse_ages(a.get_ref().ages.get_ref()),
                    parse_ages(b.get_ref().ages.get_ref()),
                ) {
                    if ranges_overlap(ra, rb) {
                        c.problem(
                            b.get_ref().ages.span(),
                            format!(
                                "band `{b_name}` (ages {}) overlaps band `{a_name}` (ages {})",
                                b.get_ref().ages.get_ref(),
                                a.get_ref().ages.get_ref()
                            ),
                        );
                    }
                }
            }
        }

        let mut groups = Vec::new();
        let mut group_band = Vec::new();
        let mut group_index = HashMap::new();
        let known_bands = || raw.bands.keys().cloned().collect::<Vec<_>>().join(", ");
        for (name, group) in &raw.groups {
            if !crate::config::valid_source_name(name) {
                c.problem(
                    group.span(),
                    format!("group name `{name}` must be lower-case letters, digits, `-` or `_`"),
                );
            }
            let band = &group.get_ref().band;
            let Some(&bi) = band_index.get(band.get_ref().as_str()) else {
                if !raw.bands.contains_key(band.get_ref()) {
                    c.problem(
                        band.span(),
                        format!(
                            "unknown band `{}`: known bands are {}",
                            band.get_ref(),
                            known_bands()
                        ),
                    );
                }
                continue;
            };
            let id = GroupId(groups.len() as u16);
            let label = group
                .get_ref()
                .label
                .clone()
                .unwrap_or_else(|| name.clone());
            groups.push(Group {
                name: name.as_str().into(),
                label: label.into(),
                band: band.get_ref().as_str().into(),
                at: c.at(group.span()),
            });
            group_band.push(bi);
            group_index.insert(Arc::<str>::from(name.as_str()), id);
        }
        if raw.groups.is_empty() {
            c.problems.push(
                Location::file_start(&file),
                "the policy defines no groups: add at least one under [groups]",
            );
        }
        let known_groups = || raw.groups.keys().cloned().collect::<Vec<_>>().join(", ");

        let mut subnets = Vec::new();
        for s in &raw.subnets {
            let s = s.get_ref();
            let group = group_index.get(s.group.get_ref().as_str()).copied();
            if group.is_none() {
                c.problem(
                    s.group.span(),
                    format!(
                        "unknown group `{}`: known groups are {}",
                        s.group.get_ref(),
                        known_groups()
                    ),
                );
            }
            match parse_cidr(s.cidr.get_ref().trim()) {
                Ok((net, prefix)) => {
                    if let Some(group) = group {
                        subnets.push(Subnet { net, prefix, group });
                    }
                }
                Err(e) => c.problem(s.cidr.span(), e),
            }
        }
        // Most specific network first, so a classroom /26 inside a school /16 wins.
        subnets.sort_by_key(|s| std::cmp::Reverse(s.prefix));

        let mut no_intercept = HashSet::new();
        for d in &raw.no_intercept.domains {
            if let Some(d) = c.domain(d) {
                no_intercept.insert(d.into_boxed_str());
            }
        }
        let mut no_intercept_mask = 0;
        for cat in &raw.no_intercept.categories {
            match category_index.get(cat.get_ref().as_str()) {
                Some(&i) => no_intercept_mask |= categories[i].mask,
                None => c.problem(cat.span(), unknown_category(cat.get_ref(), &categories)),
            }
        }

        let mut tests = Vec::new();
        for t in &raw.test {
            let t = t.get_ref();
            if !group_index.contains_key(t.group.get_ref().as_str()) {
                c.problem(
                    t.group.span(),
                    format!(
                        "unknown group `{}`: known groups are {}",
                        t.group.get_ref(),
                        known_groups()
                    ),
                );
            }
            if let Err(e) = CanonicalUrl::parse(t.url.get_ref()) {
                c.problem(
                    t.url.span(),
                    format!("test url `{}` cannot be parsed: {e}", t.url.get_ref()),
                );
            }
            let expect = match t.expect.get_ref().as_str() {
                "allow" => Action::Allow,
                "block" => Action::Block,
                other => {
                    c.problem(
                        t.expect.span(),
                        format!("expect must be \"allow\" or \"block\", found \"{other}\""),
                    );
                    continue;
                }
            };
            let rank = match &t.rule {
                None => None,
                Some(r) => match Rank::ALL.iter().find(|k| k.as_str() == r.get_ref()) {
                    Some(k) => Some(*k),
                    None => {
                        let names: Vec<_> = Rank::ALL.iter().map(|k| k.as_str()).collect();
                        c.problem(
                            r.span(),
                            format!(
                                "unknown rule `{}`: expected one of {}",
                                r.get_ref(),
                                names.join(", ")
                            ),
                        );
                        continue;
                    }
                },
            };
            tests.push(PolicyTest {
                url: t.url.get_ref().clone(),
                group: t.group.get_ref().clone(),
                expect,
                rank,
                at: c.at(t.url.span()),
            });
        }

        let Compiler {
            problems, lists, ..
        } = c;
        problems.into_result(Policy {
            file,
            school: raw.school.name.map(Into::into),
            lists,
            baseline,
            baseline_mask,
            categories,
            services,
            bands,
            groups,
            group_band,
            group_index,
            subnets,
            no_intercept,
            no_intercept_mask,
            tests,
        })
    }

    /// The policy file's name as given to [`compile`](Policy::compile).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The school's name, if the policy gives one.
    pub fn school(&self) -> Option<&str> {
        self.school.as_deref()
    }

    /// The lists the policy references, numbered.
    pub fn lists(&self) -> &[ListRef] {
        &self.lists
    }

    /// The locked-baseline categories.
    pub fn baseline(&self) -> &[Category] {
        &self.baseline
    }

    /// The (unlocked) categories.
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// The approved services.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The bands.
    pub fn bands(&self) -> impl Iterator<Item = &Band> {
        self.bands.iter().map(|b| &b.band)
    }

    /// The categories a band blocks, in the order written, with where each is
    /// named; `None` for an unknown band.
    pub fn band_blocks(&self, band: &str) -> Option<Vec<(&Category, &Location)>> {
        let rules = self.bands.iter().find(|b| &*b.band.name == band)?;
        Some(
            rules
                .block
                .iter()
                .map(|(ci, at)| (&self.categories[*ci], at))
                .collect(),
        )
    }

    /// The approved services a band names, in policy order; `None` for an
    /// unknown band.
    pub fn band_services(&self, band: &str) -> Option<Vec<&Service>> {
        let rules = self.bands.iter().find(|b| &*b.band.name == band)?;
        let mut used: Vec<usize> = rules.services.values().map(|(si, _)| *si).collect();
        used.sort_unstable();
        used.dedup();
        Some(used.into_iter().map(|si| &self.services[si]).collect())
    }

    /// The groups.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The `[[test]]` entries.
    pub fn tests(&self) -> &[PolicyTest] {
        &self.tests
    }

    /// A group by name.
    pub fn group_id(&self, name: &str) -> Option<GroupId> {
        self.group_index.get(name).copied()
    }

    /// A group.
    pub fn group(&self, id: GroupId) -> &Group {
        &self.groups[usize::from(id.0)]
    }

    /// The id of the group `name`, trying `hint` (an id this group had when it
    /// was looked up before) first: a name comparison instead of hashing the
    /// name, and still right after a reload renumbered the groups.
    pub fn group_id_hinted(&self, name: &str, hint: Option<GroupId>) -> Option<GroupId> {
        match hint {
            Some(id)
                if self
                    .groups
                    .get(usize::from(id.0))
                    .is_some_and(|g| *g.name == *name) =>
            {
                Some(id)
            }
            _ => self.group_id(name),
        }
    }

    /// The band of a group.
    pub fn band_of(&self, id: GroupId) -> &Band {
        &self.bands[self.group_band[usize::from(id.0)]].band
    }

    /// Whether any `[[subnets]]` entry maps client addresses to a group (without
    /// one, every client must log in).
    pub fn has_subnets(&self) -> bool {
        !self.subnets.is_empty()
    }

    /// The group a client address maps to through `[[subnets]]`, if any
    /// (most specific CIDR wins). Used only where no login identifies the person.
    pub fn group_for_ip(&self, ip: IpAddr) -> Option<GroupId> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.subnets
            .iter()
            .find(|s| s.net.is_ipv4() == ip.is_ipv4() && mask_addr(ip, s.prefix) == s.net)
            .map(|s| s.group)
    }

    /// Whether an allowed HTTPS request to this host is intercepted (false for the
    /// `[no_intercept]` hosts and categories: spliced, decided by name only).
    pub fn intercept(&self, host: &CanonicalHost, mask: ListMask) -> bool {
        if mask & self.no_intercept_mask != 0 {
            return false;
        }
        !host_suffixes(host).any(|s| self.no_intercept.contains(s))
    }

    /// Whether an explicit allow entry of the group's band could open *some*
    /// URL on `host` although the host as a whole is blocked by a category or
    /// the band's default: a URL-prefix entry on the host or a parent
    /// (`bbc.co.uk/bitesize` for `www.bbc.co.uk`). A CONNECT to such a host
    /// must be intercepted and each request decided on its whole URL, instead
    /// of showing the block page for the host. Ranks above allow (the locked
    /// baseline, deny entries) still close the host whatever this says. Allow
    /// *keywords* do not count: they could name any host, and opening every
    /// blocked host to look for them would dial sites the policy blocks.
    pub fn may_allow_paths_on(&self, group: GroupId, host: &CanonicalHost) -> bool {
        let rules = &self.bands[self.group_band[usize::from(group.0)]];
        host_suffixes(host).any(|s| rules.allow.urls.contains_key(s))
    }

    /// Decides a request for a group, given the lists that contain it
    /// ([`ListLookup::lookup`]). The first rank that matches decides.
    pub fn decide(&self, group: GroupId, url: &CanonicalUrl, mask: ListMask) -> Verdict {
        let rules = &self.bands[self.group_band[usize::from(group.0)]];
        if let Some(v) = self.baseline_verdict(mask) {
            return v;
        }
        if let Some(e) = rules.deny.find(url) {
            return entry_verdict(
                Action::Block,
                Rank::Deny,
                e,
                "Your school has blocked this site.",
            );
        }
        if let Some(e) = rules.allow.find(url) {
            return entry_verdict(
                Action::Allow,
                Rank::Allow,
                e,
                "Your school allows this site.",
            );
        }
        if let Some((host, (si, at))) =
            host_suffixes(url.host()).find_map(|s| rules.services.get_key_value(s))
        {
            let service = &self.services[*si];
            return Verdict {
                action: Action::Allow,
                rank: Rank::Service,
                category: None,
                service: Some(service.name.clone()),
                matched: Some((**host).into()),
                reason: format!("Approved service for your group: {}.", service.name).into(),
                rule: at.clone(),
            };
        }
        if mask & rules.block_mask != 0 {
            if let Some((ci, at)) = rules
                .block
                .iter()
                .find(|(ci, _)| self.categories[*ci].mask & mask != 0)
            {
                let cat = &self.categories[*ci];
                return Verdict {
                    action: Action::Block,
                    rank: Rank::Category,
                    category: Some(cat.name.clone()),
                    service: None,
                    matched: None,
                    reason: cat.reason.clone(),
                    rule: at.clone(),
                };
            }
        }
        let band = &rules.band;
        Verdict {
            action: band.default,
            rank: Rank::Default,
            category: None,
            service: None,
            matched: None,
            reason: match band.default {
                Action::Block => format!(
                    "{} can only visit sites that teachers have chosen, and this one is not on the list yet.",
                    band.label
                )
                .into(),
                Action::Allow => "Allowed.".into(),
            },
            rule: rules.default_at.clone(),
        }
    }

    fn baseline_verdict(&self, mask: ListMask) -> Option<Verdict> {
        if mask & self.baseline_mask == 0 {
            return None;
        }
        let cat = self.baseline.iter().find(|cat| cat.mask & mask != 0)?;
        Some(Verdict {
            action: Action::Block,
            rank: Rank::Baseline,
            category: Some(cat.name.clone()),
            service: None,
            matched: None,
            reason: cat.reason.clone(),
            rule: cat.at.clone(),
        })
    }

    /// Decides and shows every step, with the list entries that matched.
    pub fn explain(
        &self,
        group: GroupId,
        url: &CanonicalUrl,
        lists: &dyn ListLookup,
    ) -> Explanation {
        let mask = lists.lookup(url);
        let mut verdict = self.decide(group, url, mask);
        let rules = &self.bands[self.group_band[usize::from(group.0)]];
        let hits = lists.matched_entries(url);
        let list_name = |id: ListId| {
            self.lists
                .get(usize::from(id.0))
                .map_or("?".into(), |l| l.name.to_string())
        };
        let cats_hit = |cats: &[Category]| -> Vec<String> {
            cats.iter()
                .filter(|cat| cat.mask & mask != 0)
                .map(|cat| cat.name.to_string())
                .collect()
        };
        if verdict.matched.is_none() {
            let deciding_mask = verdict
                .category
                .as_deref()
                .and_then(|name| {
                    self.baseline
                        .iter()
                        .chain(&self.categories)
                        .find(|cat| &*cat.name == name)
                })
                .map_or(0, |cat| cat.mask);
            verdict.matched = hits
                .iter()
                .find(|h| h.list.bit() & deciding_mask != 0)
                .map(|h| h.entry.as_str().into());
        }
        let found = |e: Option<&Entry>| match e {
            Some(e) => (true, format!("`{}` in {} at {}", e.text, e.scope, e.at)),
            None => (false, "no entry matches".to_string()),
        };
        let mut steps = Vec::new();
        let base = cats_hit(&self.baseline);
        steps.push(Step {
            rank: Rank::Baseline,
            matched: !base.is_empty(),
            detail: if base.is_empty() {
                "in no locked list".into()
            } else {
                format!("in locked {}", base.join(", "))
            },
        });
        let (m, detail) = found(rules.deny.find(url));
        steps.push(Step {
            rank: Rank::Deny,
            matched: m,
            detail,
        });
        let (m, detail) = found(rules.allow.find(url));
        steps.push(Step {
            rank: Rank::Allow,
            matched: m,
            detail,
        });
        let service = host_suffixes(url.host()).find_map(|s| rules.services.get(s));
        steps.push(Step {
            rank: Rank::Service,
            matched: service.is_some(),
            detail: match service {
                Some((si, at)) => format!("approved service `{}` at {at}", self.services[*si].name),
                None => "no approved service for this band covers the host".into(),
            },
        });
        let blocked: Vec<String> = rules
            .block
            .iter()
            .filter(|(ci, _)| self.categories[*ci].mask & mask != 0)
            .map(|(ci, _)| self.categories[*ci].name.to_string())
            .collect();
        let other = cats_hit(&self.categories);
        steps.push(Step {
            rank: Rank::Category,
            matched: !blocked.is_empty(),
            detail: match (blocked.is_empty(), other.is_empty()) {
                (false, _) => format!("in blocked {}", blocked.join(", ")),
                (true, true) => "in no category".into(),
                (true, false) => format!("in {} (not blocked for this band)", other.join(", ")),
            },
        });
        steps.push(Step {
            rank: Rank::Default,
            matched: true,
            detail: format!(
                "band `{}` default is {} at {}",
                rules.band.name, rules.band.default, rules.default_at
            ),
        });
        let group_info = self.group(group);
        Explanation {
            verdict,
            group: group_info.name.to_string(),
            band: group_info.band.to_string(),
            list_entries: hits
                .iter()
                .map(|h: &ListEntryHit| (list_name(h.list), h.entry.clone()))
                .collect(),
            steps,
        }
    }

    /// Checks that need list contents: an allow entry, an approved service host or
    /// a no-intercept domain that a locked list contains would have no effect (the
    /// baseline wins), so it is an error rather than a silent no-op.
    pub fn check_against_lists(&self, lists: &dyn ListLookup) -> Problems {
        let mut problems = Problems::default();
        let locked_in = |url: &CanonicalUrl| -> Option<&Category> {
            let mask = lists.lookup(url);
            self.baseline.iter().find(|cat| cat.mask & mask != 0)
        };
        let mut seen = HashSet::new();
        for rules in &self.bands {
            for e in &rules.allow.entries {
                if !seen.insert(e.at.clone()) {
                    continue;
                }
                let Some(url) = entry_url(e) else { continue };
                if let Some(cat) = locked_in(&url) {
                    problems.push(
                        e.at.clone(),
                        format!("allow entry `{}` has no effect: it is in the locked baseline (`{}`), which nothing can open", e.text, cat.name),
                    );
                }
            }
        }
        for service in &self.services {
            for h in &service.hosts {
                let Ok(host) = host::canonicalize(h) else {
                    continue;
                };
                if let Some(cat) = locked_in(&CanonicalUrl::for_host(Scheme::Https, host, 443)) {
                    problems.push(
                        service.at.clone(),
                        format!("service `{}` host `{h}` has no effect: it is in the locked baseline (`{}`)", service.name, cat.name),
                    );
                }
            }
        }
        problems
    }

    /// Runs the policy's `[[test]]`s against the given lists.
    pub fn run_tests(&self, lists: &dyn ListLookup) -> Vec<TestOutcome> {
        self.tests
            .iter()
            .map(|t| {
                let got = match (CanonicalUrl::parse(&t.url), self.group_id(&t.group)) {
                    (Ok(url), Some(g)) => Ok(self.decide(g, &url, lists.lookup(&url))),
                    (Err(e), _) => Err(e.to_string()),
                    (_, None) => Err(format!("unknown group `{}`", t.group)),
                };
                let passed = got
                    .as_ref()
                    .is_ok_and(|v| v.action == t.expect && t.rank.is_none_or(|r| r == v.rank));
                TestOutcome {
                    test: t.clone(),
                    got,
                    passed,
                }
            })
            .collect()
    }
}

/// A request URL standing for an entry (`example.com` or `example.com/path`).
fn entry_url(e: &Entry) -> Option<CanonicalUrl> {
    let text = &*e.text;
    match e.kind {
        EntryKind::Keyword => None,
        EntryKind::Url => {
            let i = text.find('/')?;
            CanonicalUrl::from_parts(Scheme::Https, &text[..i], &text[i..]).ok()
        }
        EntryKind::Domain => host::canonicalize(text)
            .ok()
            .map(|h| CanonicalUrl::for_host(Scheme::Https, h, 443)),
    }
}

fn entry_verdict(action: Action, rank: Rank, e: &Entry, reason: &str) -> Verdict {
    Verdict {
        action,
        rank,
        category: None,
        service: None,
        matched: Some(e.text.clone()),
        reason: reason.into(),
        rule: e.at.clone(),
    }
}

fn unknown_category(name: &str, categories: &[Category]) -> String {
    let known: Vec<&str> = categories.iter().map(|c| &*c.name).collect();
    format!(
        "unknown category `{name}`: known categories are {}",
        known.join(", ")
    )
}

/// An allow entry that the same scope also denies never takes effect (deny ranks
/// higher), which is almost always a mistake worth reporting.
fn report_allow_deny_overlap(c: &mut Compiler<'_>, allow: &EntrySet, deny: &EntrySet) {
    let denied: HashSet<&str> = deny.entries.iter().map(|e| &*e.text).collect();
    for e in &allow.entries {
        if denied.contains(&*e.text) {
            c.problems.push(
                e.at.clone(),
                format!(
                    "allow entry `{}` has no effect: the same entry is denied, and deny wins",
                    e.text
                ),
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn compile_band(
    c: &mut Compiler<'_>,
    name: &str,
    raw: &RawBand,
    policy: &RawPolicy,
    [global_deny, global_allow]: [&EntrySet; 2],
    category_index: &HashMap<&str, usize>,
    categories: &[Category],
    service_index: &HashMap<&str, usize>,
    services: &[Service],
) -> Option<BandRules> {
    let ages = match parse_ages(raw.ages.get_ref()) {
        Ok(a) => a,
        Err(e) => {
            c.problem(raw.ages.span(), e);
            (0, None)
        }
    };
    let default = match raw.default.get_ref().as_str() {
        "allow" => Action::Allow,
        "block" => Action::Block,
        other => {
            c.problem(
                raw.default.span(),
                format!("default must be \"allow\" or \"block\", found \"{other}\""),
            );
            Action::Block
        }
    };
    let youtube = match raw
        .youtube
        .as_ref()
        .map(|y| (y.get_ref().as_str(), y.span()))
    {
        None | Some(("off", _)) => YoutubeMode::Off,
        Some(("moderate", _)) => YoutubeMode::Moderate,
        Some(("strict", _)) => YoutubeMode::Strict,
        Some((other, span)) => {
            c.problem(
                span,
                format!("youtube must be \"off\", \"moderate\" or \"strict\", found \"{other}\""),
            );
            YoutubeMode::Off
        }
    };
    let mut block = Vec::new();
    let mut block_mask = 0;
    let mut seen = HashSet::new();
    for cat in &raw.block {
        let cat_name = cat.get_ref().as_str();
        if !seen.insert(cat_name) {
            c.problem(
                cat.span(),
                format!("category `{cat_name}` is blocked twice in band `{name}`"),
            );
            continue;
        }
        match category_index.get(cat_name) {
            Some(&i) => {
                block_mask |= categories[i].mask;
                block.push((i, c.at(cat.span())));
            }
            None if policy.baseline.get_ref().contains_key(cat_name) => c.problem(
                cat.span(),
                format!("`{cat_name}` is in the locked baseline and already blocked for everyone: remove it from this band"),
            ),
            None => c.problem(cat.span(), unknown_category(cat_name, categories)),
        }
    }
    let mut band_services = HashMap::new();
    for s in &raw.services {
        match service_index.get(s.get_ref().as_str()) {
            Some(&i) => {
                for h in &services[i].hosts {
                    band_services
                        .entry(h.to_string().into_boxed_str())
                        .or_insert((i, c.at(s.span())));
                }
            }
            None => {
                let known: Vec<&str> = services.iter().map(|s| &*s.name).collect();
                c.problem(
                    s.span(),
                    format!(
                        "unknown service `{}`: known services are {}",
                        s.get_ref(),
                        known.join(", ")
                    ),
                );
            }
        }
    }
    // The band's own entries come first so they are the ones reported; then the global ones.
    let mut deny = EntrySet::default();
    c.entries(&mut deny, &raw.deny, &format!("[bands.{name}.deny]"));
    let mut allow = EntrySet::default();
    c.entries(&mut allow, &raw.allow, &format!("[bands.{name}.allow]"));
    report_allow_deny_overlap(c, &allow, &deny);
    // The global entries were compiled (and their problems reported) once, for the
    // policy itself; each band takes a copy after its own.
    merge_global(&mut deny, global_deny);
    merge_global(&mut allow, global_allow);
    for set in [&mut deny, &mut allow] {
        let kw: Vec<usize> = (0..set.entries.len())
            .filter(|&i| set.entries[i].kind == EntryKind::Keyword)
            .collect();
        finish_keywords(set, &kw);
    }
    let label = raw.label.clone().unwrap_or_else(|| name.to_uppercase());
    Some(BandRules {
        band: Band {
            name: name.into(),
            label: label.into(),
            ages,
            default,
            safe_search: raw.safe_search,
            youtube,
        },
        deny,
        allow,
        services: band_services,
        block,
        block_mask,
        default_at: c.at(raw.default.span()),
    })
}

/// Adds the global entries after a band's own, skipping ones the band already lists.
fn merge_global(set: &mut EntrySet, global: &EntrySet) {
    let existing: HashSet<Arc<str>> = set.entries.iter().map(|e| e.text.clone()).collect();
    let mut remap = HashMap::new();
    for (i, e) in global.entries.iter().enumerate() {
        if existing.contains(&e.text) {
            continue;
        }
        remap.insert(i, set.entries.len());
        set.entries.push(e.clone());
    }
    for (d, i) in &global.domains {
        if let Some(&j) = remap.get(i) {
            set.domains.entry(d.clone()).or_insert(j);
        }
    }
    for (h, prefixes) in &global.urls {
        for p in prefixes {
            if let Some(&j) = remap.get(&p.entry) {
                let mut p = p.clone();
                p.entry = j;
                set.urls.entry(h.clone()).or_default().push(p);
            }
        }
    }
}
