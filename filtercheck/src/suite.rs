//! The probe suite: which sites each band must have blocked and open.
//!
//! In: the suite file's text and name, then the compiled policy to check it
//! against. Out: a [`Suite`]. Refused, all at once and each with
//! `file:line:col`: unknown keys, a version other than 1, a probe that is not an
//! `http://` or `https://` URL with a host, a band's `block` naming a category
//! the suite has no probes for, and (against the policy) a band or a category
//! the policy does not have.
//!
//! ```toml
//! version = 1
//! [categories]              # probe sites per category
//! social = ["https://www.facebook.com/"]
//! [baseline]                # locked-baseline test entries: blocked for every band
//! child-abuse = ["http://child-abuse.hallpass-test.invalid/"]
//! [safe_search]
//! google = "http://www.google.com/search?q=filter+check"
//! youtube = "http://www.youtube.com/"
//! [bands.ks2]
//! block = ["social"]        # must be blocked (effective)
//! safe_search = true        # Google must be blocked or forced to safe=active
//! youtube = "strict"        # YouTube must be blocked or get YouTube-Restrict: Strict
//! [bands.ks2.allow]         # must stay open (reasonable): label = URL
//! bitesize = "https://www.bbc.co.uk/bitesize/"
//! ```
//!
//! The expectations are the suite's, never derived from the policy: a policy
//! that drops `social` from a band fails the check instead of quietly
//! redefining what the check expects.
use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::Error;

/// A parsed, validated suite.
#[derive(Clone, Debug)]
pub struct Suite {
    /// The file it was read from.
    pub file: String,
    /// Probe URLs per category.
    pub categories: BTreeMap<String, Vec<String>>,
    /// Locked-baseline probe URLs per locked category.
    pub baseline: BTreeMap<String, Vec<String>>,
    /// The Google search probe.
    pub google: Option<String>,
    /// The YouTube probe.
    pub youtube: Option<String>,
    /// Expectations per band.
    pub bands: BTreeMap<String, BandExpectations>,
    /// Where each band and category name is written (for messages).
    spans: BTreeMap<String, String>,
}

/// What one band must see.
#[derive(Clone, Debug, Default)]
pub struct BandExpectations {
    /// Categories whose probes must be blocked.
    pub block: Vec<String>,
    /// Sites that must stay open: label → URL.
    pub allow: BTreeMap<String, String>,
    /// Whether Google must be blocked or forced to SafeSearch.
    pub safe_search: bool,
    /// The YouTube restriction that must be forced (`strict`, `moderate`), if any.
    pub youtube: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    version: Spanned<u32>,
    #[serde(default)]
    categories: BTreeMap<String, Vec<Spanned<String>>>,
    #[serde(default)]
    baseline: BTreeMap<String, Vec<Spanned<String>>>,
    #[serde(default)]
    safe_search: RawSafeSearch,
    #[serde(default)]
    bands: BTreeMap<String, Spanned<RawBand>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSafeSearch {
    google: Option<Spanned<String>>,
    youtube: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBand {
    #[serde(default)]
    block: Vec<Spanned<String>>,
    #[serde(default)]
    allow: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    safe_search: bool,
    youtube: Option<Spanned<String>>,
}

/// `file:line:col` of a byte offset.
fn at(file: &str, text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |n| before.len() - n - 1)
        + 1;
    format!("{file}:{line}:{col}")
}

/// Whether `url` is a probe the runner can send: `http://` or `https://` and a host.
fn probe_url_problem(url: &str) -> Option<String> {
    let parsed: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return Some(format!("`{url}` is not a URL: {e}")),
    };
    match parsed.scheme_str() {
        Some("http" | "https") => {}
        _ => return Some(format!("`{url}` must start with http:// or https://")),
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Some(format!("`{url}` has no host"));
    }
    None
}

impl Suite {
    /// Parses and validates a suite read from `file`.
    pub fn parse(file: &str, text: &str) -> Result<Suite, Error> {
        let raw: RawSuite = toml::from_str(text).map_err(|e| {
            let where_ = e
                .span()
                .map_or_else(|| file.to_string(), |s| at(file, text, s.start));
            Error::Suite(format!("{where_}: {}", e.message()))
        })?;
        let mut problems = Vec::new();
        let mut spans = BTreeMap::new();
        if *raw.version.get_ref() != 1 {
            problems.push(format!(
                "{}: unsupported suite version {}: this build reads version 1",
                at(file, text, raw.version.span().start),
                raw.version.get_ref()
            ));
        }
        let urls = |list: Vec<Spanned<String>>, problems: &mut Vec<String>| -> Vec<String> {
            list.into_iter()
                .map(|u| {
                    if let Some(p) = probe_url_problem(u.get_ref()) {
                        problems.push(format!("{}: {p}", at(file, text, u.span().start)));
                    }
                    u.into_inner()
                })
                .collect()
        };
        let categories: BTreeMap<String, Vec<String>> = raw
            .categories
            .into_iter()
            .map(|(name, list)| (name, urls(list, &mut problems)))
            .collect();
        let baseline: BTreeMap<String, Vec<String>> = raw
            .baseline
            .into_iter()
            .map(|(name, list)| (name, urls(list, &mut problems)))
            .collect();
        let one = |u: Option<Spanned<String>>, problems: &mut Vec<String>| {
            u.map(|u| urls(vec![u], problems).remove(0))
        };
        let google = one(raw.safe_search.google, &mut problems);
        let youtube = one(raw.safe_search.youtube, &mut problems);
        let mut bands = BTreeMap::new();
        for (name, band) in raw.bands {
            spans.insert(format!("band {name}"), at(file, text, band.span().start));
            let band = band.into_inner();
            let mut block = Vec::new();
            for c in band.block {
                let here = at(file, text, c.span().start);
                if !categories.contains_key(c.get_ref()) {
                    problems.push(format!(
                        "{here}: band `{name}` must block `{}`, but [categories] has no probes for it (known: {})",
                        c.get_ref(),
                        categories.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                }
                spans.insert(format!("category {}", c.get_ref()), here);
                block.push(c.into_inner());
            }
            let mut allow = BTreeMap::new();
            for (label, u) in band.allow {
                let u = urls(vec![u], &mut problems).remove(0);
                allow.insert(label, u);
            }
            let youtube = match band.youtube {
                None => None,
                Some(y) => match y.get_ref().as_str() {
                    "strict" | "moderate" => Some(y.into_inner()),
                    "off" => None,
                    other => {
                        problems.push(format!(
                            "{}: youtube must be strict, moderate or off, found `{other}`",
                            at(file, text, y.span().start)
                        ));
                        None
                    }
                },
            };
            bands.insert(
                name,
                BandExpectations {
                    block,
                    allow,
                    safe_search: band.safe_search,
                    youtube,
                },
            );
        }
        for (name, b) in &bands {
            let here = spans
                .get(&format!("band {name}"))
                .cloned()
                .unwrap_or_default();
            if b.safe_search && google.is_none() {
                problems.push(format!(
                    "{here}: band `{name}` expects safe search, but [safe_search] has no google probe"
                ));
            }
            if b.youtube.is_some() && youtube.is_none() {
                problems.push(format!(
                    "{here}: band `{name}` expects a YouTube restriction, but [safe_search] has no youtube probe"
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Error::Suite(problems.join("\n")));
        }
        Ok(Suite {
            file: file.to_string(),
            categories,
            baseline,
            google,
            youtube,
            bands,
            spans,
        })
    }

    /// Checks the suite against the policy: every band it names exists, and
    /// every category it probes is one of the policy's categories or locked
    /// baseline categories. Returns the problems (empty when it fits).
    pub fn check_against(&self, policy: &policy::Policy) -> Vec<String> {
        let mut problems = Vec::new();
        let bands: Vec<String> = policy.bands().map(|b| b.name.to_string()).collect();
        for name in self.bands.keys() {
            if !bands.contains(name) {
                problems.push(format!(
                    "{}: band `{name}` is not in the policy {} (its bands: {})",
                    self.where_(&format!("band {name}")),
                    policy.file(),
                    bands.join(", ")
                ));
            }
        }
        let known: Vec<String> = policy
            .categories()
            .iter()
            .chain(policy.baseline())
            .map(|c| c.name.to_string())
            .collect();
        for name in self.categories.keys().chain(self.baseline.keys()) {
            if !known.contains(name) {
                problems.push(format!(
                    "{}: category `{name}` is not in the policy {} (its categories: {})",
                    self.file,
                    policy.file(),
                    known.join(", ")
                ));
            }
        }
        problems
    }

    fn where_(&self, key: &str) -> String {
        self.spans
            .get(key)
            .cloned()
            .unwrap_or_else(|| self.file.clone())
    }
}
