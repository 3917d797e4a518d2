//! The rules for account names and passwords, checked whenever one is set.
//!
//! In: a name, or a password with the account it is for. Out: `Ok`, or what is
//! wrong: the rule, the limit and what was found (never the password itself).
//!
//! Names: `[a-z0-9._-]`, 1 to 64 bytes, starting with a letter or digit (so a name
//! is never mistaken for a command-line option). Lower case only, so `Year3` and
//! `year3` cannot be two accounts; logins fold ASCII case before lookup.
//!
//! Passwords: individual accounts need [`PasswordRules::individual_min`]
//! characters, shared year-group logins [`PasswordRules::shared_min`]; at most
//! [`MAX_PASSWORD_BYTES`] bytes; no control characters (a tab or newline cannot be
//! typed into a browser's login box, so it is a paste accident); not the account
//! name itself.
use crate::Error;
use crate::password::Password;

/// The longest account name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// The longest password, in bytes. Far above any real password; it bounds what an
/// attacker can make the hasher read.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Checks an account name against the naming rule.
///
/// ```
/// assert!(accounts::check_name("year3").is_ok());
/// assert!(accounts::check_name("j.smith-2").is_ok());
/// assert!(accounts::check_name("Year3").is_err());
/// assert!(accounts::check_name("-rf").is_err());
/// ```
pub fn check_name(name: &str) -> Result<(), Error> {
    let bad = |reason: &str| {
        Err(Error::BadName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() {
        return bad("a name has at least one character");
    }
    if name.len() > MAX_NAME_LEN {
        return bad(&format!(
            "a name has at most {MAX_NAME_LEN} characters, found {}",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
    {
        return bad("a name uses only lower-case letters a-z, digits and . _ -");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("a name starts with a letter or a digit");
    }
    Ok(())
}

/// Minimum password lengths, by kind of account. Lengths count characters, not
/// bytes, so a password in any script is measured the way its owner sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PasswordRules {
    /// Individual accounts (staff, secondary pupils). At least
    /// [`PasswordRules::INDIVIDUAL_FLOOR`].
    pub individual_min: usize,
    /// Shared year-group logins (account name = group name). At least
    /// [`PasswordRules::SHARED_FLOOR`].
    pub shared_min: usize,
}

impl PasswordRules {
    /// The lowest `individual_min` allowed: the schools' policy says staff
    /// passwords have at least 8 characters. Settings may only raise it.
    pub const INDIVIDUAL_FLOOR: usize = 8;
    /// The lowest `shared_min` allowed, and its default.
    pub const SHARED_FLOOR: usize = 4;

    /// Whether an account is a shared year-group login: its name is its group's.
    pub fn is_shared(name: &str, group: &str) -> bool {
        name == group
    }

    /// Checks `password` for account `name` in `group`.
    pub fn check(
        &self,
        name: &str,
        group: &str,
        password: &Password,
    ) -> Result<(), PasswordProblem> {
        let text = password.expose();
        if text.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordProblem::TooLong {
                max: MAX_PASSWORD_BYTES,
                found: text.len(),
            });
        }
        if text.chars().any(char::is_control) {
            return Err(PasswordProblem::ControlCharacter);
        }
        let shared = Self::is_shared(name, group);
        let min = if shared {
            self.shared_min
        } else {
            self.individual_min
        };
        let found = text.chars().count();
        if found < min {
            return Err(PasswordProblem::TooShort { min, found, shared });
        }
        if text.eq_ignore_ascii_case(name) {
            return Err(PasswordProblem::SameAsName);
        }
        Ok(())
    }
}

impl Default for PasswordRules {
    fn default() -> PasswordRules {
        PasswordRules {
            individual_min: Self::INDIVIDUAL_FLOOR,
            shared_min: Self::SHARED_FLOOR,
        }
    }
}

/// What is wrong with a password. Holds lengths, never the password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    /// Fewer characters than the rule for this kind of account.
    #[error(
        "password too short: {found} characters; {} need at least {min}",
        if *shared { "shared year-group logins" } else { "individual accounts (staff, secondary pupils)" }
    )]
    TooShort {
        /// The rule's minimum.
        min: usize,
        /// The password's length in characters.
        found: usize,
        /// Whether the account is a shared year-group login.
        shared: bool,
    },
    /// More bytes than [`MAX_PASSWORD_BYTES`].
    #[error("password too long: {found} bytes; at most {max}")]
    TooLong {
        /// The limit.
        max: usize,
        /// The password's length in bytes.
        found: usize,
    },
    /// A tab, newline or other control character.
    #[error("password contains a control character (tab, newline, ...); type it without one")]
    ControlCharacter,
    /// The password is the account's name.
    #[error("password is the account name; choose another")]
    SameAsName,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::new(s.to_owned())
    }

    #[test]
    fn names() {
        for ok in ["a", "year3", "j.smith", "x_y-z.1", &"a".repeat(64)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Year3",
            "j smith",
            "-x",
            ".x",
            "a:b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    /// (name, group, password, individual_min, expected)
    #[test]
    fn password_rules_table() {
        use PasswordProblem::*;
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a str,
            usize,
            Result<(), PasswordProblem>,
        );
        let cases: &[Case] = &[
            // Shared year-group login: the name is the group's; 4 is enough.
            ("year3", "year3", "tig3", 8, Ok(())),
            (
                "year3",
                "year3",
                "cat",
                8,
                Err(TooShort {
                    min: 4,
                    found: 3,
                    shared: true,
                }),
            ),
            // The same short password on an individual account is refused.
            (
                "j.smith",
                "staff",
                "tig3r12",
                8,
                Err(TooShort {
                    min: 8,
                    found: 7,
                    shared: false,
                }),
            ),
            ("j.smith", "staff", "tig3r123", 8, Ok(())),
            // Raised by the settings.
            (
                "j.smith",
                "staff",
                "tig3r123",
                12,
                Err(TooShort {
                    min: 12,
                    found: 8,
                    shared: false,
                }),
            ),
            ("j.smith", "staff", "tig3r123tig3", 12, Ok(())),
            // Characters, not bytes: 8 accented letters pass.
            ("j.smith", "staff", "éééééééé", 8, Ok(())),
            (
                "j.smith",
                "staff",
                "good\tpassword",
                8,
                Err(ControlCharacter),
            ),
            (
                "j.smith",
                "staff",
                "goodpassword\n",
                8,
                Err(ControlCharacter),
            ),
            (
                "j.smith",
                "staff",
                "good\u{7f}password",
                8,
                Err(ControlCharacter),
            ),
            ("year3", "year3", "YEAR3", 8, Err(SameAsName)),
            (
                "j.smith",
                "staff",
                &"x".repeat(1025),
                8,
                Err(TooLong {
                    max: 1024,
                    found: 1025,
                }),
            ),
            ("j.smith", "staff", &"x".repeat(1024), 8, Ok(())),
        ];
        for (name, group, password, individual_min, expected) in cases {
            let rules = PasswordRules {
                individual_min: *individual_min,
                shared_min: 4,
            };
            assert_eq!(
                &rules.check(name, group, &pw(password)),
                expected,
                "{name} in {group}, min {individual_min}"
            );
        }
    }

    #[test]
    fn messages_name_the_rule_not_the_password() {
        let rules = PasswordRules::default();
        let e = rules
            .check("j.smith", "staff", &pw("s3cr"))
            .expect_err("too short");
        let text = e.to_string();
        assert!(
            text.contains("individual accounts") && text.contains("at least 8"),
            "{text}"
        );
        assert!(!text.contains("s3cr") && !format!("{e:?}").contains("s3cr"));
    }
}
