//! The only module that opens redb. Each daemon keeps one store file in its folder
//! (`agent.redb`, `controller.redb`): tables of string keys and versioned JSON values
//! (one format byte, then JSON), written one transaction at a time and made durable at
//! each commit. Quick repair is on, so a store survives a kill at any point; a store written
//! by a newer dbhaul, or one that cannot be read, is refused with a message — never reset.
//!
//! Values of the tables that hold secrets ([`schema::SEALED_TABLES`]: a task's database
//! passwords and chunk key) are sealed: AES-256-GCM under a key of their own, kept in a
//! small private file beside the store (`agent.keys/`, `controller.keys/`), deleted with the value. redb is
//! copy-on-write and does not wipe the pages it frees, so a removed value's bytes can stay
//! in the file; sealed, they are noise once their key file is gone.

pub mod schema;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format byte this dbhaul writes in front of every plain value.
const FORMAT: u8 = 1;
/// The format byte of a sealed value: then a 12-byte nonce, the sealed JSON and its tag.
const SEALED: u8 = 2;
/// The newest format this dbhaul reads.
const NEWEST: u8 = SEALED;

/// A table of the store.
#[derive(Debug, Clone, Copy)]
pub struct Table(pub &'static str);

impl Table {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store {path} is in use by another dbhaul process; stop it first (only one \
         daemon may use a folder)"
    )]
    InUse { path: String },
    #[error(
        "the store {path} cannot be used: {message}; it was left as it is: restore it from a \
         backup, or move it aside to start with an empty store (what it held is then forgotten)"
    )]
    Broken { path: String, message: String },
    #[error(
        "the store {path} holds a value (table {table}, key {key}) written by a newer dbhaul \
         (format {found}); upgrade dbhaul, or move the folder aside to start empty"
    )]
    Newer {
        path: String,
        table: &'static str,
        key: String,
        found: u8,
    },
}

pub struct Store {
    db: Database,
    path: PathBuf,
    /// The value keys read or made so far, by key file name.
    keys: std::sync::Mutex<std::collections::HashMap<String, [u8; 32]>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

impl Store {
    /// Open (or create) the store file, readable by its owner only.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        let db = Database::builder()
            .set_repair_callback(|_| {
                tracing::warn!("the store was not closed cleanly; repairing it");
            })
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse {
                    path: shown.clone(),
                },
                other => StoreError::Broken {
                    path: shown.clone(),
                    message: other.to_string(),
                },
            })?;
        crate::config::files::restrict(path).map_err(|e| StoreError::Broken {
            path: shown.clone(),
            message: format!("cannot make it private (mode 0600): {e}"),
        })?;
        let store = Store {
            db,
            path: path.to_path_buf(),
            keys: Default::default(),
        };
        store.set_quick_repair()?;
        Ok(store)
    }

    fn set_quick_repair(&self) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(|e| self.broken(e))?;
        tx.set_quick_repair(true);
        tx.commit().map_err(|e| self.broken(e))
    }

    fn broken(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Broken {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Write one value, durably.
    pub fn put<T: Serialize>(&self, table: Table, key: &str, value: &T) -> Result<(), StoreError> {
        self.put_many(table, &[(key, value)])
    }

    /// Write several values of one table in one transaction.
    pub fn put_many<T: Serialize>(
        &self,
        table: Table,
        values: &[(&str, &T)],
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(|e| self.broken(e))?;
        tx.set_quick_repair(true);
        {
            let mut t = tx
                .open_table(table.definition())
                .map_err(|e| self.broken(e))?;
            for (key, value) in values {
                let json = serde_json::to_vec(value).map_err(|e| self.broken(e))?;
                let bytes = match sealed(table) {
                    true => self.seal(table, key, json)?,
                    false => [&[FORMAT][..], &json].concat(),
                };
                t.insert(*key, bytes.as_slice())
                    .map_err(|e| self.broken(e))?;
            }
        }
        tx.commit().map_err(|e| self.broken(e))
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.broken(e))?;
        let t = match tx.open_table(table.definition()) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.broken(e)),
        };
        match t.get(key).map_err(|e| self.broken(e))? {
            None => Ok(None),
            Some(value) => self.decode(table, key, value.value()).map(Some),
        }
    }

    /// Every value of a table, in key order.
    pub fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.broken(e))?;
        let t = match tx.open_table(table.definition()) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.broken(e)),
        };
        let mut out = Vec::new();
        for entry in t.iter().map_err(|e| self.broken(e))? {
            let (key, value) = entry.map_err(|e| self.broken(e))?;
            let key = key.value().to_string();
            let decoded = self.decode(table, &key, value.value())?;
            out.push((key, decoded));
        }
        Ok(out)
    }

    /// Remove the given keys in one transaction.
    pub fn remove(&self, table: Table, keys: &[String]) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(|e| self.broken(e))?;
        tx.set_quick_repair(true);
        {
            let mut t = tx
                .open_table(table.definition())
                .map_err(|e| self.broken(e))?;
            for key in keys {
                t.remove(key.as_str()).map_err(|e| self.broken(e))?;
            }
        }
        tx.commit().map_err(|e| self.broken(e))?;
        if sealed(table) {
            for key in keys {
                self.forget_key(table, key)?;
            }
        }
        Ok(())
    }

    /// The folder of the value keys: `controller.redb` keeps them in `controller.keys/`.
    fn keys_dir(&self) -> PathBuf {
        self.path.with_extension("keys")
    }

    fn key_file(&self, table: Table, key: &str) -> (String, PathBuf) {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{}\0{key}", table.0).as_bytes());
        let name = hex::encode(&digest[..16]);
        let path = self.keys_dir().join(&name);
        (name, path)
    }

    /// The key of one value; made (and written durably) when `make` and there is none.
    fn value_key(&self, table: Table, key: &str, make: bool) -> Result<[u8; 32], StoreError> {
        let (name, path) = self.key_file(table, key);
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = keys.get(&name) {
            return Ok(*found);
        }
        let found = match std::fs::read(&path) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                self.broken(format!(
                    "the key file {} of value {key} (table {}) is not 32 bytes",
                    path.display(),
                    table.0
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && make => {
                let mut fresh = [0u8; 32];
                aws_lc_rs::rand::fill(&mut fresh).map_err(|_| self.broken("no randomness"))?;
                crate::config::files::private_dir(&self.keys_dir())
                    .and_then(|()| crate::config::files::write_private(&path, &fresh))
                    .map_err(|e| {
                        self.broken(format!("cannot write the key file {}: {e}", path.display()))
                    })?;
                fresh
            }
            Err(e) => {
                return Err(self.broken(format!(
                    "value {key} of table {} is sealed and its key file {} cannot be read \
                     ({e})",
                    table.0,
                    path.display()
                )));
            }
        };
        keys.insert(name, found);
        Ok(found)
    }

    /// Delete a removed value's key: what is left of the value in the store is noise.
    fn forget_key(&self, table: Table, key: &str) -> Result<(), StoreError> {
        let (name, path) = self.key_file(table, key);
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(self.broken(format!(
                    "cannot delete the key file {}: {e}",
                    path.display()
                )));
            }
        }
        if let Ok(dir) = std::fs::File::open(self.keys_dir()) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    fn cipher(&self, key: &[u8; 32]) -> Result<aws_lc_rs::aead::LessSafeKey, StoreError> {
        use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
        UnboundKey::new(&AES_256_GCM, key)
            .map(LessSafeKey::new)
            .map_err(|_| self.broken("cannot set up AES-256-GCM"))
    }

    /// `SEALED ‖ nonce ‖ AES-256-GCM(json)`, bound to its table and key.
    fn seal(&self, table: Table, key: &str, mut json: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        use aws_lc_rs::aead::{Aad, NONCE_LEN, Nonce};
        let cipher = self.cipher(&self.value_key(table, key, true)?)?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| self.broken("no randomness"))?;
        let aad = format!("{}\0{key}", table.0);
        cipher
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut json,
            )
            .map_err(|_| self.broken("cannot seal a value"))?;
        Ok([&[SEALED][..], &nonce, &json].concat())
    }

    fn unseal(&self, table: Table, key: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        use aws_lc_rs::aead::{Aad, NONCE_LEN, Nonce};
        let cipher = self.cipher(&self.value_key(table, key, false)?)?;
        let unreadable = || {
            self.broken(format!(
                "value {key} of table {} does not open with its key file",
                table.0
            ))
        };
        let (nonce, body) = sealed
            .split_first_chunk::<NONCE_LEN>()
            .ok_or_else(unreadable)?;
        let mut body = body.to_vec();
        let aad = format!("{}\0{key}", table.0);
        let plain = cipher
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad.as_bytes()),
                &mut body,
            )
            .map_err(|_| unreadable())?;
        Ok(plain.to_vec())
    }

    fn decode<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        let unreadable = |e: serde_json::Error| {
            self.broken(format!(
                "value {key} of table {} is unreadable: {e}",
                table.0
            ))
        };
        match bytes.split_first() {
            Some((&FORMAT, json)) => serde_json::from_slice(json).map_err(unreadable),
            Some((&SEALED, sealed)) => {
                serde_json::from_slice(&self.unseal(table, key, sealed)?).map_err(unreadable)
            }
            Some((&found, _)) if found > NEWEST => Err(StoreError::Newer {
                path: self.path.display().to_string(),
                table: table.0,
                key: key.to_string(),
                found,
            }),
            _ => Err(self.broken(format!(
                "value {key} of table {} has an unknown format",
                table.0
            ))),
        }
    }
}

/// Whether a table's values are sealed (they hold secrets).
fn sealed(table: Table) -> bool {
    schema::SEALED_TABLES.contains(&table.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Table = Table("things");

    #[test]
    fn values_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.get::<u32>(T, "a").unwrap(), None);
            store.put(T, "b", &2u32).unwrap();
            store.put(T, "a", &1u32).unwrap();
            store.remove(T, &["b".into()]).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.list::<u32>(T).unwrap(), vec![("a".to_string(), 1)]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    /// A task's secrets never reach the file in the clear, and once the task is removed
    /// its key file is gone: what redb keeps of freed pages is noise.
    #[test]
    fn sealed_values_read_back_and_leave_no_secret_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.redb");
        let tasks = Table(schema::SEALED_TABLES[0]);
        let secret = "Sentinel7PasswordXyz";
        {
            let store = Store::open(&path).unwrap();
            for round in 0..5 {
                store
                    .put(tasks, "t", &format!("{secret} round {round}"))
                    .unwrap();
            }
            store.put(T, "plain", &1u32).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.get::<String>(tasks, "t").unwrap().as_deref(),
            Some("Sentinel7PasswordXyz round 4")
        );
        let keys = std::fs::read_dir(dir.path().join("controller.keys"))
            .unwrap()
            .count();
        assert_eq!(keys, 1);
        store.remove(tasks, &["t".into()]).unwrap();
        assert_eq!(store.get::<String>(tasks, "t").unwrap(), None);
        let keys = std::fs::read_dir(dir.path().join("controller.keys"))
            .unwrap()
            .count();
        assert_eq!(keys, 0);
        let bytes = std::fs::read(&path).unwrap();
        let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "the secret is in the store's file");
        assert_eq!(store.get::<u32>(T, "plain").unwrap(), Some(1));
    }

    #[test]
    fn a_second_process_and_a_newer_format_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::InUse { .. })));
        {
            let tx = store.db.begin_write().unwrap();
            {
                let mut t = tx.open_table(T.definition()).unwrap();
                t.insert("k", [9u8, b'1'].as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        let err = store.get::<u32>(T, "k").unwrap_err().to_string();
        assert!(err.contains("newer dbhaul"), "{err}");
    }
}
