//! [`Password`]: a password on its way to the hasher, which cannot be printed.
//!
//! In: the text a user typed. Out: the same text, only through
//! [`Password::expose`]. `Debug` prints `[redacted]`, there is no `Display`, and
//! the buffer is wiped when the value is dropped, so a stray `{:?}` in a log or an
//! error never leaks it.
use std::fmt;

use zeroize::Zeroizing;

/// A password (or any secret text): redacted in `Debug`, wiped on drop.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps `text`. The caller should drop its own copies.
    pub fn new(text: String) -> Password {
        Password(Zeroizing::new(text))
    }

    /// The text, for the hasher and the rules. Keep the borrow short.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Password {
    fn from(text: String) -> Password {
        Password::new(text)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_text() {
        let p = Password::new("hunter2-secret".into());
        assert_eq!(format!("{p:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&p)), "Some([redacted])");
        assert_eq!(p.expose(), "hunter2-secret");
    }
}
