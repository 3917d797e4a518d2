//! The hallpass policy engine: pure data in, decisions out.
//!
//! This crate takes the *text* of policy files (plus a source name used in error
//! messages) and returns a compiled [`Policy`] that decides requests. It does no
//! I/O at all: no files, no network, no clock. Everything that varies (list
//! contents, the current time) is passed in, which keeps every decision
//! reproducible in tests and in `hallpass explain`.
//!
//! What goes in and what comes out:
//! - [`host::canonicalize`] and [`url::CanonicalUrl`] turn whatever spelling a
//!   browser or a list uses into the one canonical form that is decided, dialled
//!   and logged. Anything ambiguous is refused, never guessed.
//! - [`Policy::compile`] parses and validates a policy file, reporting every
//!   problem at once as `file:line:col: message`.
//! - [`Policy::decide`] applies the precedence (locked baseline > explicit deny >
//!   explicit allow > approved service > category block > band default) and returns
//!   a [`Verdict`]; [`Policy::explain`] returns every step that was considered.
//!
//! List contents live in the `blocklists` crate; this crate only numbers the lists
//! it references ([`ListId`]) and receives a bitmask of the lists that contain a
//! request through the [`ListLookup`] trait.
#![forbid(unsafe_code)]

pub mod config;
pub mod decide;
pub mod event;
pub mod host;
mod model;
pub mod policy;
pub mod scan;
pub mod service;
pub mod source;
pub mod url;

#[cfg(test)]
mod precedence_tests;

pub use decide::{
    Action, Explanation, ListEntryHit, ListId, ListLookup, ListMask, Rank, Step, Verdict,
};
pub use policy::{
    Band, Category, Group, GroupId, ListRef, Policy, PolicyTest, Service, TestOutcome, YoutubeMode,
};
pub use source::{Location, Problem, Problems};
pub use url::CanonicalUrl;
