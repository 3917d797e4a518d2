//! The hallpass forward proxy.
//!
//! One module per stage of the request path (see the design's diagram): a request
//! is accepted, its target normalised, decided against one policy snapshot, then
//! forwarded, spliced, intercepted or answered with the block page.
#![forbid(unsafe_code)]

pub mod snapshot;
