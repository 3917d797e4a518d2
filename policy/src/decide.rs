//! Verdicts and the precedence that produces them.
//!
//! In: a compiled [`Policy`](crate::Policy), a group, a [`CanonicalUrl`] and the
//! bitmask of lists that contain it. Out: a [`Verdict`] (allow or block, the rank
//! that decided, the category, the policy line). The first rank that matches decides:
//!
//! | Rank | Rule | Result |
//! |---|---|---|
//! | 1 | locked baseline | block; nothing lifts it |
//! | 2 | explicit deny (`[deny]`, band `deny`) | block |
//! | 3 | explicit allow (`[allow]`, band `allow`) | allow |
//! | 4 | approved service (band `services`) | allow |
//! | 5 | category block (band `block`) | block |
//! | 6 | band default | the band's `default` |
use std::fmt;
use std::sync::Arc;

use crate::source::Location;
use crate::url::CanonicalUrl;

/// A set of lists, one bit per [`ListId`].
pub type ListMask = u128;

/// The number the policy gives a list it references; the only contract between
/// `policy` and `blocklists`. At most 128 lists can be referenced.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListId(pub u8);

impl ListId {
    /// The largest number of lists one policy may reference.
    pub const MAX: usize = 128;

    /// This list's bit in a [`ListMask`].
    pub fn bit(self) -> ListMask {
        1u128 << self.0
    }
}

/// One entry of a list that contains a request (for `explain`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntryHit {
    /// The list.
    pub list: ListId,
    /// The entry as written in the list (canonical form), e.g. `facebook.com`.
    pub entry: String,
}

/// What the policy needs from the compiled lists.
pub trait ListLookup {
    /// Every list that contains the URL: by host (label-boundary suffix), by URL
    /// prefix, or by expression.
    fn lookup(&self, url: &CanonicalUrl) -> ListMask;

    /// The entries that matched, for explaining a verdict. May be slower than
    /// [`lookup`](ListLookup::lookup).
    fn matched_entries(&self, url: &CanonicalUrl) -> Vec<ListEntryHit>;
}

/// Allow or block.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The request goes through.
    Allow,
    /// The request gets the block page.
    Block,
}

impl Action {
    /// `"allow"` or `"block"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block => "block",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The precedence rank that decided; lower ranks win.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rank {
    /// 1: the locked baseline.
    Baseline = 1,
    /// 2: an explicit deny entry.
    Deny = 2,
    /// 3: an explicit allow entry.
    Allow = 3,
    /// 4: an approved service.
    Service = 4,
    /// 5: a blocked category.
    Category = 5,
    /// 6: the band's default.
    Default = 6,
}

impl Rank {
    /// All ranks in precedence order.
    pub const ALL: [Rank; 6] = [
        Rank::Baseline,
        Rank::Deny,
        Rank::Allow,
        Rank::Service,
        Rank::Category,
        Rank::Default,
    ];

    /// The rule kind's name as used in `explain --json` (`"baseline"`, `"deny"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Rank::Baseline => "baseline",
            Rank::Deny => "deny",
            Rank::Allow => "allow",
            Rank::Service => "service",
            Rank::Category => "category",
            Rank::Default => "default",
        }
    }
}

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Allow or block.
    pub action: Action,
    /// The rank that decided.
    pub rank: Rank,
    /// The category (baseline or band category) that decided, if any.
    pub category: Option<Arc<str>>,
    /// The approved service that allowed the request, if any.
    pub service: Option<Arc<str>>,
    /// The explicit entry that matched (deny/allow/service host), if any.
    pub matched: Option<Arc<str>>,
    /// Why, in words a pupil understands (shown on the block page).
    pub reason: Arc<str>,
    /// The policy line that decided.
    pub rule: Location,
}

/// One precedence step as `explain` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The rank of this step.
    pub rank: Rank,
    /// Whether this step matched the request.
    pub matched: bool,
    /// What was checked and what was found.
    pub detail: String,
}

/// A verdict with every step that was considered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The verdict (the same one [`Policy::decide`](crate::Policy::decide) gives).
    pub verdict: Verdict,
    /// The group the request was decided for.
    pub group: String,
    /// The band of that group.
    pub band: String,
    /// The list entries that contain the request, with list names.
    pub list_entries: Vec<(String, String)>,
    /// Every rank in order, with what it found.
    pub steps: Vec<Step>,
}
