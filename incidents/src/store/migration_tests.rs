//! Migrations are applied by what the database has recorded, not by its
//! highest version: a database with 1 and 3 recorded gets 2 (a migration
//! numbered below one already applied, as when two lines of work each added
//! one), on SQLite and on the real PostgreSQL at 127.0.0.1:5432 (one schema
//! per test; `HALLPASS_TEST_POSTGRES` overrides the URL; skipped with a
//! message when no server answers, except under `CI=true`).
use super::{MIGRATIONS, Migration, SCHEMA_VERSION, pending};
use crate::error::Error;

/// A migration 2 written after 1 and 3 were released.
const TWO: Migration = Migration {
    version: 2,
    sqlite: "CREATE TABLE migration_two (id INTEGER PRIMARY KEY, note TEXT NOT NULL);\n\
             CREATE INDEX migration_two_note ON migration_two (note);",
    postgres: "CREATE TABLE migration_two (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note TEXT NOT NULL);\n\
               CREATE INDEX migration_two_note ON migration_two (note);",
};

/// This build's migrations with a migration 2 (this build's own, else [`TWO`]).
fn with_two() -> Vec<Migration> {
    let mut all: Vec<Migration> = MIGRATIONS
        .iter()
        .map(|m| Migration {
            version: m.version,
            sqlite: m.sqlite,
            postgres: m.postgres,
        })
        .collect();
    if !all.iter().any(|m| m.version == 2) {
        let at = all.iter().position(|m| m.version > 2).unwrap_or(all.len());
        all.insert(at, TWO);
    }
    all
}

#[test]
fn migrations_are_in_order_and_end_at_the_schema_version() {
    assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
    assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
}

#[test]
fn pending_is_every_unrecorded_version_in_order_and_unknown_ones_are_refused() {
    let all = with_two();
    // A build without migration 2 refuses a database that recorded it.
    let without: Vec<Migration> = all
        .iter()
        .filter(|m| m.version != 2)
        .map(|m| Migration {
            version: m.version,
            sqlite: m.sqlite,
            postgres: m.postgres,
        })
        .collect();
    let every: Vec<u32> = all.iter().map(|m| m.version).collect();
    let but_two: Vec<u32> = every.iter().copied().filter(|&v| v != 2).collect();
    let e = pending(&without, &every)
        .map(|_| ())
        .expect_err("unknown version 2");
    assert!(e.to_string().contains("version 2"), "{e}");
    let versions = |p: Vec<&Migration>| p.iter().map(|m| m.version).collect::<Vec<_>>();
    assert_eq!(versions(pending(&all, &[]).expect("fresh")), every);
    assert_eq!(versions(pending(&all, &but_two).expect("gap")), [2]);
    assert!(pending(&all, &every).expect("current").is_empty());
    let newer = SCHEMA_VERSION + 1;
    let mut from_a_newer_build = but_two.clone();
    from_a_newer_build.push(newer);
    let e = pending(&all, &from_a_newer_build)
        .map(|_| ())
        .expect_err("a newer build's database");
    assert!(
        matches!(&e, Error::Schema(m) if m.contains(&format!("version {newer}")) && m.contains("upgrade hallpass")),
        "{e}"
    );
}

#[test]
fn sqlite_applies_a_lower_numbered_migration_it_has_not_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("incidents.sqlite3");
    // A store that has 1 and 3 recorded but not 2 (as a database written by a
    // build that had no migration 2 would be): this build's store with 2 undone.
    drop(super::Store::open_sqlite(&path).expect("open"));
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch(UNDO_TWO_SQLITE).expect("undo 2");
    drop(conn);
    let recorded = |path: &std::path::Path| -> Vec<u32> {
        let conn = rusqlite::Connection::open(path).expect("open");
        let mut stmt = conn
            .prepare("SELECT version FROM schema_version ORDER BY version")
            .expect("prepare");
        stmt.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(recorded(&path), all_but_two());
    // This build opens it: 2 is applied and recorded, once.
    drop(super::Store::open_sqlite(&path).expect("reopen"));
    assert_eq!(recorded(&path), all_versions());
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.query_row("SELECT count(*) FROM alerts", [], |r| r.get::<_, i64>(0))
        .expect("migration 2's table exists");
    drop(conn);
    drop(super::Store::open_sqlite(&path).expect("again"));
    assert_eq!(recorded(&path), all_versions());
}

/// Every version this build applies.
fn all_versions() -> Vec<u32> {
    MIGRATIONS.iter().map(|m| m.version).collect()
}

/// Every version this build applies but 2.
fn all_but_two() -> Vec<u32> {
    all_versions().into_iter().filter(|&v| v != 2).collect()
}

/// Versions as PostgreSQL's INTEGER column reads back.
fn signed(versions: Vec<u32>) -> Vec<i32> {
    versions
        .into_iter()
        .map(|v| i32::try_from(v).expect("small version"))
        .collect()
}

/// Removes what migration 2 created, and its record (SQLite).
const UNDO_TWO_SQLITE: &str = "DROP TRIGGER incidents_alert; DROP TRIGGER incidents_alert_deleted; \
    DROP TABLE alerts; DELETE FROM schema_version WHERE version = 2;";

/// Removes what migration 2 created, and its record (PostgreSQL).
const UNDO_TWO_POSTGRES: &str = "DROP TRIGGER incidents_alert ON incidents; \
    DROP FUNCTION incidents_alert(); DROP TABLE alerts; DELETE FROM schema_version WHERE version = 2;";

/// The test server's URL.
fn pg_url() -> String {
    std::env::var("HALLPASS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[test]
fn postgres_applies_a_lower_numbered_migration_it_has_not_recorded() {
    let mut admin = match ::postgres::Client::connect(&pg_url(), ::postgres::NoTls) {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("PostgreSQL at {} is required in CI: {e}", pg_url());
            }
            eprintln!(
                "SKIPPED migration test on postgres: no server at {} ({e})",
                pg_url()
            );
            return;
        }
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let schema = format!("t_mig_{}_{}", std::process::id(), nanos % 1_000_000_000);
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .expect("create schema");
    struct Drop_(String);
    impl Drop for Drop_ {
        fn drop(&mut self) {
            if let Ok(mut admin) = ::postgres::Client::connect(&pg_url(), ::postgres::NoTls) {
                let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
            }
        }
    }
    let _dropped = Drop_(schema.clone());
    let sep = if pg_url().contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}options=-csearch_path%3D{schema}", pg_url());
    let mut client = ::postgres::Client::connect(&url, ::postgres::NoTls).expect("connect");
    let recorded = |client: &mut ::postgres::Client| -> Vec<i32> {
        client
            .query("SELECT version FROM schema_version ORDER BY version", &[])
            .expect("query")
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    // 1 and 3 recorded, 2 not: this build's schema with 2 undone.
    super::postgres::migrate(&mut client, MIGRATIONS).expect("this build");
    client.batch_execute(UNDO_TWO_POSTGRES).expect("undo 2");
    assert_eq!(recorded(&mut client), signed(all_but_two()));
    // This build applies 2 and records it, once.
    super::postgres::migrate(&mut client, MIGRATIONS).expect("with 2");
    assert_eq!(recorded(&mut client), signed(all_versions()));
    client
        .query("SELECT count(*) FROM alerts", &[])
        .expect("migration 2's table exists");
    super::postgres::migrate(&mut client, MIGRATIONS).expect("again");
    assert_eq!(recorded(&mut client), signed(all_versions()));
}

#[test]
fn sqlite_events_keep_only_the_indexes_their_queries_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("incidents.sqlite3");
    drop(super::Store::open_sqlite(&path).expect("open"));
    let conn = rusqlite::Connection::open(&path).expect("open");
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' ORDER BY name")
        .expect("prepare");
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    // The time range of every listing, report and prune, and the reference
    // (replays, an incident's events); SQLite cannot use an index for the
    // optional account filter, so (who, time) went in version 4.
    assert_eq!(names, ["events_time", "sqlite_autoindex_events_1"]);
}
