//! hallpass filter checks: is filtering effective, reasonable and appropriate?
//!
//! In: a probe [`suite::Suite`] (a TOML file the school keeps beside its
//! policy), the policy (which group is in which band, which group the checking
//! machine's address maps to), the logins to probe with ([`logins`]) and the
//! address of the running proxy. Out: a [`report::Report`] with one result per
//! probe, judged per group and category, with under-blocking (a must-block
//! probe got through) and over-blocking (a must-allow probe was blocked)
//! counts, ready to print or to store ([`report::Report::to_record`] →
//! `incidents::Store::record_filter_check`).
//!
//! Every probe is a real request through the proxy, as the group: plain HTTP
//! in absolute form, HTTPS as CONNECT then TLS trusting the school CA. The
//! verdict is read from the proxy's own `Hallpass-Verdict` response header
//! (which the proxy removes from origin responses, so no site can fake it):
//!
//! | The proxy answered | Outcome |
//! |---|---|
//! | `403` with `Hallpass-Verdict: block` (its block page) | blocked |
//! | `Hallpass-Verdict: allow`, `502` | allowed-unreachable: the policy allowed it, the site could not be reached from here |
//! | `Hallpass-Verdict: allow`, any other status | allowed (the origin's own answer) |
//! | anything else (`407`, no header, no answer) | error: no verdict, which fails the probe |
//!
//! So an allowed site is recognised without the internet, and an unreachable
//! site is never mistaken for a blocked one (or the other way round). Safe
//! search passes when the engine is blocked outright or when the proxy's
//! `Hallpass-Safe-Search` header names the parameter or header it forced.
//!
//! Refused: a suite naming a band or category the policy does not have, a probe
//! URL that is not `http://` or `https://`, a group with no way to be
//! identified when it was asked for by name, a logins file others can read.
#![forbid(unsafe_code)]

pub mod logins;
pub mod probe;
pub mod report;
pub mod run;
pub mod suite;

pub use report::Report;
pub use run::{GroupPlan, Target, plan, run};
pub use suite::Suite;

/// Everything that stops a filter check before or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The suite file has problems (one `file:line:col: message` per line).
    #[error("{0}")]
    Suite(String),
    /// The logins file has a problem.
    #[error("{0}")]
    Logins(String),
    /// A group asked for cannot be checked (unknown, or no identity).
    #[error("{0}")]
    Group(String),
    /// The school CA could not be read.
    #[error("{0}")]
    Ca(String),
}
