//! Passwords and SASL PLAIN: argon2id hashing for `ferry passwd`, constant-time verification,
//! and the user table the SASL layer checks credentials against.
//!
//! Verification costs a full argon2 run (tens of milliseconds, by design): callers on an async
//! runtime run it on a blocking thread.

use std::collections::HashMap;
use std::fmt;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

use crate::config::User;

/// The cost parameters of a new hash (argon2id, version 0x13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    /// Memory, in KiB.
    pub memory_kib: u32,
    /// Passes over that memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl HashCost {
    /// OWASP's first recommended argon2id setting (m=19456 KiB, t=2, p=1): about 20 ms here,
    /// cheap enough for a broker's logins and costly enough for an offline guesser.
    pub const DEFAULT: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
}

impl Default for HashCost {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash password: {0}")]
pub struct HashError(String);

/// Hashes `password` with argon2id, [`HashCost::DEFAULT`] and a random 16-byte salt, giving a
/// PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) for `[[users]]`.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    hash_password_with(password.as_bytes(), HashCost::DEFAULT)
}

/// [`hash_password`] with explicit costs; tests use tiny ones to stay fast.
pub fn hash_password_with(password: &[u8], cost: HashCost) -> Result<String, HashError> {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
        .map_err(|e| HashError(e.to_string()))?;
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password)
        .map_err(|e| HashError(e.to_string()))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `phc`. The costs come from the string itself, and
/// the final comparison is constant time (argon2's `Output` equality), so the time taken says
/// nothing about how close a guess was. A malformed `phc` matches nothing.
pub fn verify_password(phc: &str, password: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(password, &hash).is_ok(),
        Err(_) => false,
    }
}

/// Checks that `phc` is an argon2 PHC string we can verify against, so that a typo in the
/// config is refused at start-up instead of locking the user out silently.
pub fn check_phc(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
    Algorithm::try_from(hash.algorithm.as_str()).map_err(|_| {
        format!(
            "unsupported algorithm `{}` (expected argon2id, argon2i or argon2d)",
            hash.algorithm.as_str()
        )
    })?;
    Params::try_from(&hash).map_err(|e| format!("bad argon2 parameters: {e}"))?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("the PHC string has no salt or no hash".into());
    }
    Ok(())
}

/// A SASL PLAIN initial response (RFC 4616 §2): `[authzid] NUL authcid NUL passwd`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PlainCredentials<'a> {
    /// The identity to act as; empty means "the same as `authcid`".
    pub authzid: &'a str,
    /// The identity whose password this is.
    pub authcid: &'a str,
    /// The password, as sent.
    pub password: &'a [u8],
}

/// Keeps the password out of logs.
impl fmt::Debug for PlainCredentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl<'a> PlainCredentials<'a> {
    /// The identity the session runs as, or `None` when the client asks to act as someone
    /// else: we have no proxy-authorization rules, so a non-empty `authzid` must equal
    /// `authcid` (RFC 4616 §2 leaves that policy to the server).
    pub fn identity(&self) -> Option<&'a str> {
        plain_identity(self.authzid, self.authcid)
    }
}

/// Splits a PLAIN initial response. `None` when it is not exactly three NUL-separated fields,
/// when `authzid` or `authcid` is not UTF-8, or when `authcid` or the password is empty
/// (RFC 4616 requires both to be non-empty).
pub fn parse_plain(initial_response: &[u8]) -> Option<PlainCredentials<'_>> {
    let mut fields = initial_response.splitn(3, |&b| b == 0);
    let authzid = std::str::from_utf8(fields.next()?).ok()?;
    let authcid = std::str::from_utf8(fields.next()?).ok()?;
    let password = fields.next()?;
    if authcid.is_empty() || password.is_empty() || password.contains(&0) {
        return None;
    }
    Some(PlainCredentials {
        authzid,
        authcid,
        password,
    })
}

/// The authorization rule of PLAIN: an empty `authzid`, or one equal to `authcid`, yields
/// `authcid`; anything else is refused.
pub fn plain_identity<'a>(authzid: &str, authcid: &'a str) -> Option<&'a str> {
    (authzid.is_empty() || authzid == authcid).then_some(authcid)
}

/// A valid PHC string with the default costs, verified against when the user is unknown so
/// that a failed login takes as long whether or not the name exists.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$ivLSXW2NO+w8Tskt/CuJNQ$uCG/MDEYFMBACz+LJ7ViZDM3wyIZ19lIWGG4IMBSzr0";

/// The configured users, by name.
#[derive(Clone, Default)]
pub struct Users {
    by_name: HashMap<String, String>,
}

/// Names only: hashes stay out of logs.
impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Users").field("names", &names).finish()
    }
}

impl Users {
    /// The table of `[[users]]` (names were checked unique when the config was validated; a
    /// later duplicate would win).
    pub fn new(users: &[User]) -> Self {
        let by_name = users
            .iter()
            .map(|u| (u.name.clone(), u.password_hash.clone()))
            .collect();
        Self { by_name }
    }

    /// Whether no users are configured (PLAIN can then never succeed).
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether `name` exists and `password` is its password. An unknown name still costs one
    /// argon2 run, against a dummy hash, so timing does not tell which names exist.
    pub fn verify(&self, name: &str, password: &[u8]) -> bool {
        match self.by_name.get(name) {
            Some(phc) => verify_password(phc, password),
            None => {
                let _ = verify_password(DUMMY_PHC, password);
                false
            }
        }
    }

    /// Authenticates a SASL PLAIN initial response; the identity on success.
    pub fn authenticate_plain<'a>(&self, initial_response: &'a [u8]) -> Option<&'a str> {
        let creds = parse_plain(initial_response)?;
        // Check the password even when the authzid is refused, so both failures look alike.
        let password_ok = self.verify(creds.authcid, creds.password);
        let identity = creds.identity()?;
        password_ok.then_some(identity)
    }
}

impl crate::transport::Authenticator for Users {
    fn verify_plain(&self, initial_response: &[u8]) -> bool {
        self.authenticate_plain(initial_response).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_hash_is_valid_with_default_costs() {
        check_phc(DUMMY_PHC).unwrap();
        let hash = PasswordHash::new(DUMMY_PHC).unwrap();
        let params = Params::try_from(&hash).unwrap();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (
                HashCost::DEFAULT.memory_kib,
                HashCost::DEFAULT.iterations,
                HashCost::DEFAULT.parallelism
            )
        );
    }
}
