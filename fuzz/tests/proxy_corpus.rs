//! Replays the request-head and CONNECT-target corpora through their checks.
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

#[test]
fn request_head_corpus() {
    let count = hallpass_fuzz::replay_path(
        &corpus("request_head"),
        hallpass_fuzz::proxy_checks::request_head,
    );
    assert!(count >= 20, "only {count} corpus files");
}

#[test]
fn connect_target_corpus() {
    let count = hallpass_fuzz::replay_path(
        &corpus("connect_target"),
        hallpass_fuzz::proxy_checks::connect_target,
    );
    assert!(count >= 10, "only {count} corpus files");
}
