//! An agent's folder and its settings file, `agent.toml`, which `dbhaul agent configure`
//! writes and `dbhaul agent serve` reads. The folder holds:
//!
//! ```text
//! agent.toml        port, listen address, host name, capacity, password hash (0600)
//! tls/agent.crt     the self-signed certificate the controller pins
//! tls/agent.key     its private key (0600)
//! agent.redb        assignments and their status (0600)
//! work/<task>/...   chunk files
//! logs/<task>.log   per-task log lines
//! ```
//!
//! Only an Argon2id hash of the password is kept, never the password. The running agent
//! reads the file again when it changes, so `configure` takes effect at once.

use std::path::PathBuf;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};

/// The agent's port unless configured otherwise.
pub const DEFAULT_PORT: u16 = 3554;

/// The agent's folder when `--dir` and `DBHAUL_AGENT_DIR` are not given.
pub const DEFAULT_DIR: &str = "/opt/dbhaul/var/agent";

/// The files of an agent's folder.
#[derive(Debug, Clone)]
pub struct AgentPaths {
    pub root: PathBuf,
}

impl AgentPaths {
    pub fn new(root: PathBuf) -> AgentPaths {
        AgentPaths { root }
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("agent.toml")
    }
    pub fn cert(&self) -> PathBuf {
        self.root.join("tls").join("agent.crt")
    }
    pub fn key(&self) -> PathBuf {
        self.root.join("tls").join("agent.key")
    }
    pub fn store(&self) -> PathBuf {
        self.root.join("agent.redb")
    }
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
}

/// `agent.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The name the agent gives itself when it joins a controller.
    pub name: String,
    /// The host name controllers reach it by (also in its certificate).
    pub host: String,
    /// The address it listens on.
    pub listen: String,
    pub port: u16,
    /// Subtasks it runs at once.
    pub parallel: u32,
    /// Argon2id hash (PHC string) of the password.
    pub password_hash: String,
    /// Argon2id hash of the credential it made when it last joined a controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_secret_hash: Option<String>,
    /// The controller this agent belongs to (the id it sent at its first login), until it
    /// is released; another controller's login is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_id: Option<String>,
    /// Let tasks load an ODBC driver named by its library's path (`Driver=/path/lib.so`),
    /// a file DSN, or a driver key that loads code. Off: only drivers registered by name
    /// with the driver manager (`odbcinst.ini`) and DSNs naming them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_driver_paths: bool,
    /// Driver libraries tasks may name by path although `allow_driver_paths` is off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_drivers: Vec<PathBuf>,
}

impl AgentConfig {
    pub fn load(paths: &AgentPaths) -> Result<AgentConfig, String> {
        let path = paths.config();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{} is not a configured agent folder (no agent.toml); run `dbhaul agent \
                     configure --dir {}` first",
                    paths.root.display(),
                    paths.root.display()
                )
            } else {
                format!("cannot read {}: {e}", path.display())
            }
        })?;
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))
    }

    pub fn save(&self, paths: &AgentPaths) -> Result<(), String> {
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        let text = format!(
            "# Written by `dbhaul agent configure`; run it again to change the password or \
             the port.\n{text}"
        );
        crate::config::files::write_private(&paths.config(), text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", paths.config().display()))
    }

    /// What the agent's tasks may make the driver manager load.
    pub fn driver_policy(&self) -> crate::source::DriverPolicy {
        crate::source::DriverPolicy {
            any_path: self.allow_driver_paths,
            allowed_files: self.allowed_drivers.clone(),
        }
    }

    /// Whether `password` is the agent's password, or the credential of a joined controller.
    pub fn accepts(&self, password: &str) -> bool {
        self.credential_for(password, None).is_some()
    }

    /// The hash `password` matches: the password's, the joined controller's credential's,
    /// or `joining` (a credential offered by a join in progress). Each is an Argon2
    /// verification: callers bound how many run at once.
    pub fn credential_for(&self, password: &str, joining: Option<&str>) -> Option<String> {
        [
            Some(self.password_hash.as_str()),
            self.join_secret_hash.as_deref(),
            joining,
        ]
        .into_iter()
        .flatten()
        .find(|hash| verify(hash, password))
        .map(str::to_string)
    }
}

/// The password rule: 8 to 20 letters and digits, at least one digit and one upper-case
/// letter. The message spells the rule out.
pub fn check_password(password: &str) -> Result<(), String> {
    const RULE: &str = "the password must be 8 to 20 letters and digits (A-Z, a-z, 0-9), with at \
                        least one digit and one upper-case letter";
    let problem = if !(8..=20).contains(&password.chars().count()) {
        Some(format!("it has {} characters", password.chars().count()))
    } else if !password.chars().all(|c| c.is_ascii_alphanumeric()) {
        Some("it has a character that is not a letter or a digit".to_string())
    } else if !password.chars().any(|c| c.is_ascii_digit()) {
        Some("it has no digit".to_string())
    } else if !password.chars().any(|c| c.is_ascii_uppercase()) {
        Some("it has no upper-case letter".to_string())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(format!("{RULE}; {problem}")),
    }
}

/// An Argon2id hash of a password, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules() {
        let cases = [
            ("Secret123", true),
            ("Abcdefg1", true),
            ("A1234567890123456789", true),
            ("Abcdef1", false),               // 7 characters
            ("A12345678901234567890", false), // 21
            ("secret123", false),             // no upper case
            ("SecretPass", false),            // no digit
            ("Secret 123", false),            // space
            ("Secret-123", false),            // punctuation
            ("Sécret123", false),             // not ASCII
        ];
        for (password, ok) in cases {
            let result = check_password(password);
            assert_eq!(result.is_ok(), ok, "{password}: {result:?}");
            if let Err(message) = result {
                assert!(message.contains("8 to 20 letters and digits"), "{message}");
            }
        }
    }

    #[test]
    fn hashes_verify_and_never_hold_the_password() {
        let hash = hash_password("Secret123").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("Secret123"));
        let config = AgentConfig {
            name: "a".into(),
            host: "h".into(),
            listen: "0.0.0.0".into(),
            port: 1,
            parallel: 1,
            password_hash: hash,
            join_secret_hash: None,
            controller_id: None,
            allow_driver_paths: false,
            allowed_drivers: vec![],
        };
        assert!(config.accepts("Secret123"));
        assert!(!config.accepts("Secret124"));
    }
}
