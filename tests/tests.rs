//! Integration tests against real sockets: one binary, one module per feature.
//!
//! Each proxy test starts the proxy in-process on `127.0.0.1:0` with local
//! origins on 127.0.0.2/3 and a stub resolver (see `harness`). Every refusal
//! asserts that the origin saw no connection.
mod cli;
mod filter_check;
mod harness;
mod incidents_crash;
mod ops;
mod proxy_auth;
mod proxy_http;
mod proxy_https;
mod proxy_hygiene;
mod proxy_lifecycle;
mod proxy_pool;
mod proxy_upgrade;
mod report;
mod systemd;
mod users;
