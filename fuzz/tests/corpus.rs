//! Replays the checked-in corpus of every fuzz target through its checks, so
//! that a plain `cargo test` (any toolchain, no libFuzzer) guards the same
//! invariants as the fuzzers.
use std::path::Path;

fn corpus(target: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

#[test]
fn canonical_host_corpus() {
    let count =
        hallpass_fuzz::replay_path(&corpus("canonical_host"), hallpass_fuzz::canonical_host);
    assert!(count >= 20, "only {count} corpus files");
}

#[test]
fn canonical_url_corpus() {
    let count = hallpass_fuzz::replay_path(&corpus("canonical_url"), hallpass_fuzz::canonical_url);
    assert!(count >= 20, "only {count} corpus files");
}
