//! Test support: stores on both engines, one PostgreSQL schema per test.
//!
//! PostgreSQL is the real server at 127.0.0.1:5432 (database `test`, trust auth;
//! `HALLPASS_TEST_POSTGRES` overrides the URL). Each test gets a fresh schema
//! with a random name, set as the connection's search_path, dropped at the end.
//! When the server does not answer, the test fails if `CI=true` and otherwise
//! prints why and is skipped.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use incidents::Store;

/// The server's URL.
pub fn pg_url() -> String {
    std::env::var("HALLPASS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema that is dropped when this value is.
pub struct PgSchema {
    pub name: String,
    pub url: String,
}

impl PgSchema {
    /// Creates a fresh schema, or `None` (after saying why) when the server is
    /// not reachable outside CI. Panics in CI.
    pub fn create(test: &str) -> Option<PgSchema> {
        static N: AtomicU64 = AtomicU64::new(0);
        let mut admin = match postgres::Client::connect(&pg_url(), postgres::NoTls) {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{test}: PostgreSQL at {} is required in CI: {e}", pg_url());
                }
                eprintln!(
                    "SKIPPED {test} on postgres: no server at {} ({e})",
                    pg_url()
                );
                return None;
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            nanos % 1_000_000_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .expect("create schema");
        let sep = if pg_url().contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}options=-csearch_path%3D{name}", pg_url());
        Some(PgSchema { name, url })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&pg_url(), postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// A store under test and what keeps it alive.
pub struct TestStore {
    pub store: Store,
    pub engine: &'static str,
    /// Reopens the same store (a second connection, or after a "restart").
    pub reopen: Box<dyn Fn() -> Store + Send + Sync>,
    pub dir: tempfile::TempDir,
    _schema: Option<PgSchema>,
}

/// A SQLite store in a temp dir.
pub fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("incidents.sqlite3");
    let store = Store::open_sqlite(&path).expect("open sqlite");
    TestStore {
        store,
        engine: "sqlite",
        reopen: Box::new(move || Store::open_sqlite(&path).expect("reopen sqlite")),
        dir,
        _schema: None,
    }
}

/// A PostgreSQL store in a fresh schema, or `None` when skipped.
pub fn postgres(test: &str) -> Option<TestStore> {
    let schema = PgSchema::create(test)?;
    let url = schema.url.clone();
    let store = Store::open_postgres(&url).expect("open postgres");
    Some(TestStore {
        store,
        engine: "postgres",
        reopen: Box::new(move || Store::open_postgres(&url).expect("reopen postgres")),
        dir: tempfile::tempdir().expect("tempdir"),
        _schema: Some(schema),
    })
}

/// Runs `body` on SQLite, then on PostgreSQL (when reachable).
pub fn both(test: &str, body: impl Fn(TestStore)) {
    body(sqlite());
    if let Some(pg) = postgres(test) {
        body(pg);
    }
}
