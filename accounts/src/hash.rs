//! argon2id password hashes in PHC string form (`$argon2id$v=19$m=...`).
//!
//! In: a password and [`HashParams`] (to hash), or a password and a stored PHC
//! string (to verify). Out: a new PHC string with a fresh 16-byte salt from the
//! operating system, or whether the password matches.
//!
//! Refused at load (see [`check_phc`]): anything but argon2id version 19, and
//! parameters outside sane bounds, so a damaged file cannot make every login
//! allocate gigabytes.
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::Error;

/// argon2id cost parameters for new hashes. Existing hashes keep the parameters
/// they were made with (they are part of the PHC string) until the password is
/// next set.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB (`m`). Default 19456 (19 MiB).
    pub memory_kib: u32,
    /// Passes over memory (`t`). Default 2.
    pub iterations: u32,
    /// Lanes (`p`). Default 1.
    pub parallelism: u32,
}

impl HashParams {
    /// OWASP's recommended argon2id configuration (Password Storage Cheat Sheet):
    /// m = 19 MiB, t = 2, p = 1. About 20-40 ms per hash on one core of a
    /// current server: slow for an attacker with a stolen file, and the proxy
    /// only pays it once per cache TTL per user.
    pub const OWASP: HashParams = HashParams {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };
    /// The most memory a stored hash may ask for (1 GiB).
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
    /// The most passes a stored hash may ask for.
    pub const MAX_ITERATIONS: u32 = 64;
    /// The most lanes a stored hash may ask for.
    pub const MAX_PARALLELISM: u32 = 64;

    fn argon2(&self) -> Result<Argon2<'static>, Error> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| Error::Internal {
                what: "argon2 parameters",
                detail: e.to_string(),
            })?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for HashParams {
    fn default() -> HashParams {
        HashParams::OWASP
    }
}

/// Hashes `password` with a fresh random salt.
pub(crate) fn hash_password(password: &[u8], params: &HashParams) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    // `SaltString::generate` panics if the random source fails; this reports it.
    OsRng
        .try_fill_bytes(&mut salt)
        .map_err(|e| Error::Internal {
            what: "the operating system's random source",
            detail: e.to_string(),
        })?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Internal {
        what: "salt encoding",
        detail: e.to_string(),
    })?;
    let hash = params
        .argon2()?
        .hash_password(password, &salt)
        .map_err(|e| Error::Internal {
            what: "argon2id hashing",
            detail: e.to_string(),
        })?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `phc`. A string that does not parse
/// never matches (it was checked at load, so this does not happen in practice).
pub(crate) fn verify_password(password: &[u8], phc: &str) -> bool {
    match PasswordHash::new(phc) {
        // The parameters come from the PHC string, not from this instance.
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Checks a stored PHC string: argon2id, version 19, bounded cost. The message
/// says what is wrong without repeating the hash.
pub(crate) fn check_phc(phc: &str) -> Result<(), String> {
    let parsed =
        PasswordHash::new(phc).map_err(|e| format!("not a PHC password hash string ({e})"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "expected an argon2id hash, found {}",
            parsed.algorithm.as_str()
        ));
    }
    if parsed.version != Some(0x13) {
        return Err("expected argon2 version 19 (v=19)".into());
    }
    let params = Params::try_from(&parsed).map_err(|e| format!("bad argon2 parameters ({e})"))?;
    if params.m_cost() > HashParams::MAX_MEMORY_KIB
        || params.t_cost() > HashParams::MAX_ITERATIONS
        || params.p_cost() > HashParams::MAX_PARALLELISM
    {
        return Err(format!(
            "argon2 parameters m={}, t={}, p={} exceed the limits m<={}, t<={}, p<={}",
            params.m_cost(),
            params.t_cost(),
            params.p_cost(),
            HashParams::MAX_MEMORY_KIB,
            HashParams::MAX_ITERATIONS,
            HashParams::MAX_PARALLELISM
        ));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("the hash has no salt or no output".into());
    }
    Ok(())
}

/// Cheap parameters for tests only: hashing with [`HashParams::OWASP`] in a debug
/// build takes about a second.
#[cfg(test)]
pub(crate) const TEST_PARAMS: HashParams = HashParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let phc = hash_password(b"correct horse", &TEST_PARAMS).expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(check_phc(&phc).is_ok());
        assert!(verify_password(b"correct horse", &phc));
        assert!(!verify_password(b"correct horsf", &phc));
        assert!(!verify_password(b"", &phc));
        // A fresh salt every time.
        assert_ne!(
            phc,
            hash_password(b"correct horse", &TEST_PARAMS).expect("hash")
        );
    }

    #[test]
    fn owasp_defaults_round_trip() {
        let phc = hash_password(b"pw", &HashParams::default()).expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password(b"pw", &phc));
    }

    #[test]
    fn stored_hashes_are_checked() {
        let phc = hash_password(b"pw", &TEST_PARAMS).expect("hash");
        assert!(check_phc(&phc.replace("argon2id", "argon2i")).is_err());
        assert!(check_phc(&phc.replace("v=19", "v=16")).is_err());
        assert!(check_phc(&phc.replace("m=64", "m=99999999")).is_err());
        assert!(check_phc("plaintext").is_err());
        assert!(!verify_password(b"plaintext", "plaintext"));
    }
}
