//! Fuzz target `canonical_host`: see `hallpass_fuzz::canonical_host` for the invariants.
//!
//! Under cargo-fuzz (`--cfg fuzzing`) this is a libFuzzer harness; otherwise
//! it replays the files or directories named on the command line.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hallpass_fuzz::canonical_host(data));

#[cfg(not(fuzzing))]
fn main() {
    hallpass_fuzz::replay_args(hallpass_fuzz::canonical_host);
}
