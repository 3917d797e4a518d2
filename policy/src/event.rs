//! Block events: the plain record of one request the proxy refused.
//!
//! In: filled in by the proxy at the moment it answers with a block page (or
//! refuses a request for a reason a safeguarding lead may need to see). Out: plain
//! data that the event sink stores and the incident rules read. Nothing here does
//! I/O; the time is given by the caller as milliseconds since the Unix epoch.
//!
//! The URL is always the *redacted* form: no userinfo, and no values of query keys
//! that carry secrets (`password`, `token`, `session`, ...). Credentials never
//! reach an event.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Why the request was refused, as far as the incident rules care.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockKind {
    /// The policy blocked the URL (any precedence rank; see `rule` and `category`).
    Policy,
    /// The upstream server's TLS certificate failed verification.
    UpstreamCertificate,
    /// The request tried to reach another host than its tunnel (domain fronting):
    /// a `Host`/`:authority` or SNI that differs from the CONNECT name.
    Fronting,
    /// The destination resolved to an address the proxy never dials (loopback,
    /// link-local, private without an opt-in, the proxy itself) or to a port that
    /// is not allowed.
    Destination,
    /// Deciding failed (an internal error): the proxy failed closed.
    DecisionFailed,
    /// A pupil asked for a review of a block from the block page.
    ReviewRequest,
    /// Proxy logins from this address or for this account kept failing (the
    /// verifier's back-off threshold was reached or doubled). Nothing was
    /// forwarded; `who` is set only when the name tried is an existing account,
    /// so a password typed into the name field is never recorded.
    AuthFailure,
}

impl BlockKind {
    /// The kebab-case name used in JSON (`"policy"`, `"upstream-certificate"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            BlockKind::Policy => "policy",
            BlockKind::UpstreamCertificate => "upstream-certificate",
            BlockKind::Fronting => "fronting",
            BlockKind::Destination => "destination",
            BlockKind::DecisionFailed => "decision-failed",
            BlockKind::ReviewRequest => "review-request",
            BlockKind::AuthFailure => "auth-failure",
        }
    }
}

/// One block, as the pupil saw it and as the incident rules read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEvent {
    /// The reference shown on the block page (e.g. `K3PZ-7Q2M-A1`); unique per event.
    pub reference: String,
    /// When, in milliseconds since the Unix epoch (UTC).
    pub time_ms: u64,
    /// The client's address.
    pub client_ip: IpAddr,
    /// Who was identified: an account name, or `None` when only the subnet or
    /// group is known.
    pub who: Option<String>,
    /// The group the request was decided for (e.g. `year4`).
    pub group: String,
    /// The band of that group (e.g. `ks2`).
    pub band: String,
    /// The request method (`GET`, `CONNECT`, ...).
    pub method: String,
    /// The URL with secrets removed (userinfo, secret query values), percent-encoded.
    pub url: String,
    /// The category that decided, if any (e.g. `adult`).
    pub category: Option<String>,
    /// The rule that decided: rank and place, e.g. `category policy.toml:14:1`.
    pub rule: Option<String>,
    /// Why the request was refused.
    pub kind: BlockKind,
}
