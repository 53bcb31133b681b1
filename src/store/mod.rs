//! The only module that opens redb. Each daemon keeps one store file in its folder
//! (`agent.redb`, `controller.redb`): tables of string keys and versioned JSON values
//! (one format byte, then JSON), written one transaction at a time and made durable at
//! each commit. Quick repair is on, so a store survives a kill at any point; a store written
//! by a newer dbhaul, or one that cannot be read, is refused with a message — never reset.

pub mod schema;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format byte this dbhaul writes in front of every value.
const FORMAT: u8 = 1;

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
                let mut bytes = vec![FORMAT];
                serde_json::to_writer(&mut bytes, value).map_err(|e| self.broken(e))?;
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
        tx.commit().map_err(|e| self.broken(e))
    }

    fn decode<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        match bytes.split_first() {
            Some((&FORMAT, json)) => serde_json::from_slice(json).map_err(|e| {
                self.broken(format!(
                    "value {key} of table {} is unreadable: {e}",
                    table.0
                ))
            }),
            Some((&found, _)) if found > FORMAT => Err(StoreError::Newer {
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
