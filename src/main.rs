//! The `hallpass` command.
fn main() {}
