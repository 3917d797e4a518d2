//! The raw serde model of a policy file, exactly as the technician writes it.
//!
//! Every table denies unknown keys, and every value checked later keeps its span
//! so a problem can be reported as `file:line:col`. Nothing here is validated:
//! `policy.rs` turns this into a [`Policy`](crate::Policy) or a list of problems.
use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A string with the place it was written.
pub(crate) type SString = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub version: Spanned<u32>,
    #[serde(default)]
    pub school: RawSchool,
    pub baseline: Spanned<BTreeMap<String, Spanned<Vec<SString>>>>,
    #[serde(default)]
    pub categories: BTreeMap<String, Spanned<RawCategory>>,
    #[serde(default)]
    pub services: BTreeMap<String, Spanned<Vec<SString>>>,
    #[serde(default)]
    pub allow: RawEntries,
    #[serde(default)]
    pub deny: RawEntries,
    #[serde(default)]
    pub no_intercept: RawNoIntercept,
    pub bands: BTreeMap<String, Spanned<RawBand>>,
    pub groups: BTreeMap<String, Spanned<RawGroup>>,
    #[serde(default)]
    pub subnets: Vec<Spanned<RawSubnet>>,
    #[serde(default)]
    pub test: Vec<Spanned<RawTest>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchool {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCategory {
    pub lists: Vec<SString>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Explicit entries: domains (label-boundary suffix), URL prefixes, keywords.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEntries {
    #[serde(default)]
    pub domains: Vec<SString>,
    #[serde(default)]
    pub urls: Vec<SString>,
    #[serde(default)]
    pub keywords: Vec<SString>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNoIntercept {
    #[serde(default)]
    pub domains: Vec<SString>,
    #[serde(default)]
    pub categories: Vec<SString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBand {
    #[serde(default)]
    pub label: Option<String>,
    pub ages: SString,
    pub default: SString,
    #[serde(default)]
    pub block: Vec<SString>,
    #[serde(default)]
    pub services: Vec<SString>,
    #[serde(default)]
    pub allow: RawEntries,
    #[serde(default)]
    pub deny: RawEntries,
    #[serde(default)]
    pub safe_search: bool,
    #[serde(default)]
    pub youtube: Option<SString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    pub band: SString,
    #[serde(default)]
    pub label: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubnet {
    pub cidr: SString,
    pub group: SString,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTest {
    pub url: SString,
    pub group: SString,
    pub expect: SString,
    #[serde(default)]
    pub rule: Option<SString>,
}
