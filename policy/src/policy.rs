//! The compiled policy. (Implementation in progress: signatures are the contract.)
use std::sync::Arc;

use crate::decide::{Explanation, ListId, ListLookup, ListMask, Verdict};
use crate::host::CanonicalHost;
use crate::source::{Location, Problems};
use crate::url::CanonicalUrl;

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
    /// Human label, e.g. "Key Stage 2 (ages 7-11)".
    pub label: Arc<str>,
    /// Inclusive age range; `None` upper bound means "and older".
    pub ages: (u8, Option<u8>),
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
    /// The band's name.
    pub band: Arc<str>,
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
    pub expect: crate::decide::Action,
    /// Optionally, the expected deciding rank.
    pub rank: Option<crate::decide::Rank>,
    /// Where the test is.
    pub at: Location,
}

/// A compiled, validated policy.
#[derive(Debug)]
pub struct Policy {
    _private: (),
}

impl Policy {
    /// Parses and validates a policy file.
    pub fn compile(file: &str, text: &str) -> Result<Policy, Problems> {
        let _ = (file, text);
        todo!()
    }
    /// The lists the policy references, numbered.
    pub fn lists(&self) -> &[ListRef] {
        todo!()
    }
    /// A group by name.
    pub fn group_id(&self, name: &str) -> Option<GroupId> {
        let _ = name;
        todo!()
    }
    /// A group.
    pub fn group(&self, id: GroupId) -> &Group {
        let _ = id;
        todo!()
    }
    /// The band of a group.
    pub fn band_of(&self, id: GroupId) -> &Band {
        let _ = id;
        todo!()
    }
    /// Decides a request for a group, given the lists that contain it.
    pub fn decide(&self, group: GroupId, url: &CanonicalUrl, mask: ListMask) -> Verdict {
        let _ = (group, url, mask);
        todo!()
    }
    /// Decides and shows every step.
    pub fn explain(&self, group: GroupId, url: &CanonicalUrl, lists: &dyn ListLookup) -> Explanation {
        let _ = (group, url, lists);
        todo!()
    }
    /// The group a client address maps to through `[[subnets]]`, if any
    /// (most specific CIDR wins). Used only where no login identifies the person.
    pub fn group_for_ip(&self, ip: std::net::IpAddr) -> Option<GroupId> {
        let _ = ip;
        todo!()
    }
    /// Whether an allowed HTTPS request to this host is intercepted (false for the
    /// `[no_intercept]` hosts and categories: spliced, decided by name only).
    pub fn intercept(&self, host: &CanonicalHost, mask: ListMask) -> bool {
        let _ = (host, mask);
        todo!()
    }
}
