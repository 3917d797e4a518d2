//! hallpass block lists (pending).
#![forbid(unsafe_code)]
