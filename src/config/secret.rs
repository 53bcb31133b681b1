//! A secret (a password) that cannot be printed by accident: its `Debug` and `Display` show
//! `***`. The only way to the value is [`Secret::expose`], which is easy to grep for.

use std::fmt;

/// A random token of 32 bytes from the operating system, hex: session, admin and join
/// tokens, task ids.
pub fn random_token() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Compare secrets without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Bytes of an encryption key (AES-256).
pub const KEY_BYTES: usize = 32;

/// A task key (and a chunk's data key): 32 bytes; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct TaskKey([u8; KEY_BYTES]);

impl std::fmt::Debug for TaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskKey(***)")
    }
}

impl TaskKey {
    /// The key a job's `encryption_key_env` holds, or why it is not one.
    pub fn from_secret(secret: &Secret) -> Result<TaskKey, String> {
        let text = secret.expose().trim();
        let bytes = hex::decode(text)
            .ok()
            .filter(|b| b.len() == KEY_BYTES)
            .ok_or_else(|| {
                format!(
                    "is not a key: give 64 hex digits (32 random bytes), such as `openssl rand \
                 -hex 32` prints (it has {} characters)",
                    text.len()
                )
            })?;
        let mut key = [0u8; KEY_BYTES];
        key.copy_from_slice(&bytes);
        Ok(TaskKey(key))
    }

    /// A key of these bytes (a chunk's data key).
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> TaskKey {
        TaskKey(bytes)
    }

    pub fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }
}
