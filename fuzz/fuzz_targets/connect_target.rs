//! Fuzz target `connect_target`: see `hallpass_fuzz::proxy_checks::connect_target`.
//!
//! Under cargo-fuzz (`--cfg fuzzing`) this is a libFuzzer harness; otherwise
//! it replays the files or directories named on the command line.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hallpass_fuzz::proxy_checks::connect_target(data));

#[cfg(not(fuzzing))]
fn main() {
    hallpass_fuzz::replay_args(hallpass_fuzz::proxy_checks::connect_target);
}
