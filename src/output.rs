//! A command's output on stdout.
//!
//! `println!` panics when stdout is a pipe whose reader has gone
//! (`hallpass events --since 30d | head`). A filter in a pipeline should end
//! quietly then, as `grep` or `rg` do; the output was not wanted any more.
//! Any other failure to write (a full disk behind `> file`) is a real error:
//! it is said on stderr and the command exits 1, so a truncated export is never
//! taken for a whole one.
use std::fmt;
use std::io::{ErrorKind, Write};

/// Writes `args` to stdout, ending the process as described above on failure.
pub fn write(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        // Nothing more can be written; say why where it can still be read.
        let _ = writeln!(std::io::stderr(), "hallpass: cannot write the output: {e}");
        std::process::exit(1);
    }
}

/// `println!` for a command's output (see the module).
macro_rules! out {
    () => { $crate::output::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` for a command's output (see the module).
macro_rules! out_raw {
    ($($arg:tt)*) => { $crate::output::write(format_args!($($arg)*)) };
}
