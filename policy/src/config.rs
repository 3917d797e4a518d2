//! The main configuration file, `hallpass.toml` (pending).
