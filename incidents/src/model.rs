//! The records the store keeps and the workflow moves: incidents, their states,
//! kinds, roles, actions taken, sign-offs and audit entries.
//!
//! In: plain values. Out: plain values with stable kebab-case names (what the
//! database, the CLI and JSON use). Refused: unknown names when parsing
//! ([`std::str::FromStr`] says what was expected).
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Declares a kebab-case enum with `as_str`, `Display`, `FromStr` and the list of
/// every value, so the database, the CLI and the error messages spell it the same.
macro_rules! names {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The kebab-case name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "expected one of {}, found `{other}`",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

names! {
    /// What an incident is about; decides who it goes to and who may see its URL.
    IncidentKind {
        /// A locked-baseline hit (child abuse, terrorism): urgent, DSL only.
        Illegal = "illegal",
        /// A safeguarding category (self-harm, extremism, ...).
        Safeguarding = "safeguarding",
        /// Repeated attempts at one category by one account.
        Inappropriate = "inappropriate",
        /// Repeated authentication failures.
        Access = "access",
        /// A pupil asked for a block to be reviewed.
        ReviewRequest = "review-request",
        /// A member of staff reported an unsuitable site that was not blocked.
        UnsuitableSite = "unsuitable-site",
    }
}

names! {
    /// How fast someone must look.
    Urgency {
        /// Alert the safeguarding lead at once.
        Urgent = "urgent",
        /// The next review round.
        Normal = "normal",
    }
}

names! {
    /// Where an incident is in the review workflow.
    State {
        /// Opened, nobody has looked yet.
        New = "new",
        /// Someone is reviewing it.
        UnderReview = "under-review",
        /// The review is recorded with the action taken.
        ActionTaken = "action-taken",
        /// Finished (may be reopened).
        Closed = "closed",
    }
}

names! {
    /// Who is acting. Given by the caller (the console's login, or the CLI flag).
    Role {
        /// Runs the filter; sees incidents exist, never reviews them.
        Technician = "technician",
        /// Reviews block reports and non-safeguarding incidents.
        EsafetyOfficer = "esafety-officer",
        /// The designated safeguarding lead: everything, including illegal URLs.
        SafeguardingLead = "safeguarding-lead",
        /// Signs off reviews as principal.
        Principal = "principal",
        /// Signs off reviews as governor.
        Governor = "governor",
    }
}

names! {
    /// What was done about an incident (the schools' incident log's list).
    ActionTaken {
        /// Parents or carers were informed.
        InformParents = "inform-parents",
        /// A risk assessment was made.
        RiskAssessment = "risk-assessment",
        /// Counselling was offered.
        Counselling = "counselling",
        /// Sanctions under the behaviour policy.
        Sanctions = "sanctions",
        /// Referred to the local authority designated officer.
        ReferralLado = "referral-lado",
        /// Referred to the police.
        ReferralPolice = "referral-police",
        /// Reviewed; nothing further needed (e.g. a block lifted or confirmed).
        NoFurtherAction = "no-further-action",
    }
}

/// Someone acting on the store: a name for the audit trail and a role for the checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The person (account name), written to the audit trail.
    pub name: String,
    /// The role they act in.
    pub role: Role,
}

impl Actor {
    /// An actor with a name and role.
    pub fn new(name: impl Into<String>, role: Role) -> Actor {
        Actor {
            name: name.into(),
            role,
        }
    }
}

/// A failed proxy authentication, counted by the `access` rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFailure {
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The account name that was tried, if the client sent one.
    pub who: Option<String>,
}

/// Who an incident is about, as far as it is known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The account, when an individual was identified.
    pub who: Option<String>,
    /// The group (a shared year-group login names the group here).
    pub group: String,
    /// The client's address, when known.
    pub ip: Option<String>,
    /// False for shared year-group logins or subnet-only identification: the
    /// individual cannot be told apart from the group.
    pub identifiable: bool,
}

/// A sign-off by principal or governor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignOff {
    /// Who signed.
    pub by: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// An incident the rules (or a staff report) want opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewIncident {
    /// Its kind.
    pub kind: IncidentKind,
    /// Its urgency.
    pub urgency: Urgency,
    /// Who reported it (`hallpass` for the rules, or a staff name).
    pub reported_by: String,
    /// Who it is for (a role name such as `safeguarding-lead`).
    pub reported_to: String,
    /// When it happened, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// What happened, in words.
    pub description: String,
    /// The category, if any.
    pub category: Option<String>,
    /// The URL (redacted as in the event); withheld from all but the DSL for `illegal`.
    pub url: Option<String>,
    /// Who it is about.
    pub subject: Subject,
    /// The events it came from.
    pub references: Vec<String>,
    /// Incidents with the same key still `new` within the coalescing window
    /// collect further events instead of opening another incident.
    pub dedup_key: String,
}

/// One incident as stored, as a given role may see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// The incident number (never reused, even after a delete).
    pub number: u64,
    /// Its kind.
    pub kind: IncidentKind,
    /// Its urgency.
    pub urgency: Urgency,
    /// Its workflow state.
    pub state: State,
    /// Who reported it.
    pub reported_by: String,
    /// Who it was reported to.
    pub reported_to: String,
    /// When it happened (the first event), ms since the epoch.
    pub opened_ms: u64,
    /// What happened.
    pub description: String,
    /// The category, if any.
    pub category: Option<String>,
    /// The URL; `None` when there is none or it is withheld (see `url_withheld`).
    pub url: Option<String>,
    /// True when a URL exists but this role may not see it.
    pub url_withheld: bool,
    /// Who it is about.
    pub subject: Subject,
    /// When the review was recorded.
    pub review_date_ms: Option<u64>,
    /// The result of the review.
    pub review_result: Option<String>,
    /// The actions taken.
    pub actions: Vec<ActionTaken>,
    /// The outcome.
    pub outcome: Option<String>,
    /// The principal's sign-off.
    pub principal_signoff: Option<SignOff>,
    /// The governor's sign-off.
    pub governor_signoff: Option<SignOff>,
    /// The events it came from, oldest first.
    pub references: Vec<String>,
    /// Bumped on every change; guards against lost updates.
    pub revision: u64,
    /// Last change, ms since the epoch.
    pub updated_ms: u64,
}

/// One line of the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The incident.
    pub number: u64,
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// Who.
    pub actor: String,
    /// In which role (`system` for the rules).
    pub role: String,
    /// What (`opened`, `start-review`, `record-review`, `close`, `reopen`,
    /// `sign-principal`, `sign-governor`, `read-url`, `export-evidence`, `delete`).
    pub action: String,
    /// The change in words (old → new values).
    pub detail: String,
}

/// Which raw events to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// From this time on (ms since the epoch, inclusive).
    pub since_ms: Option<u64>,
    /// Before this time (exclusive).
    pub until_ms: Option<u64>,
    /// Only this account.
    pub who: Option<String>,
    /// Only this category.
    pub category: Option<String>,
    /// At most this many (oldest first).
    pub limit: Option<usize>,
}

/// Which incidents to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncidentFilter {
    /// Only this state.
    pub state: Option<State>,
    /// Only this kind.
    pub kind: Option<IncidentKind>,
    /// Opened at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
}

/// Joins actions for storage: `inform-parents,counselling`.
pub(crate) fn actions_to_text(actions: &[ActionTaken]) -> String {
    actions
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads actions back from storage.
pub(crate) fn actions_from_text(text: &str) -> Result<Vec<ActionTaken>, String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

pub(crate) use policy::host::push_ip;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_refusals_list_the_choices() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(*s));
        }
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(*r));
        }
        let err = "boss".parse::<Role>().expect_err("unknown role");
        assert!(
            err.contains("safeguarding-lead") && err.contains("`boss`"),
            "{err}"
        );
        let actions = [ActionTaken::InformParents, ActionTaken::ReferralLado];
        assert_eq!(
            actions_from_text(&actions_to_text(&actions)),
            Ok(actions.to_vec())
        );
        assert_eq!(actions_from_text(""), Ok(vec![]));
    }
}
