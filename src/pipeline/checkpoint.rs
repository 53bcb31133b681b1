//! Checkpoints: how a subtask read in key order continues after an interruption instead of
//! starting its table over.
//!
//! Each time the compressor seals a chunk of such a subtask, it writes `checkpoint.json`
//! next to the chunks (fsync, then rename): the run id, every chunk sealed so far and the
//! key of the last row in the last of them. A subtask that starts again (a killed agent, a
//! lost connection, `tasks resume`, `dbhaul run` again) and finds a checkpoint written for
//! the same subtask, task and file format keeps that run id and those chunks, sends them
//! down the pipeline again (uploads are overwrites; the copy stage skips a chunk its
//! bookkeeping already holds for the run), and reads only the rows after that key, numbering
//! its chunks on from there. A chunk passes downstream only after the checkpoint that lists
//! it is durable, so nothing the checkpoint does not know of was ever uploaded or loaded.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::FileSettings;
use crate::config::files::write_private;
use crate::model::{ChunkName, ChunkRecord, SubtaskSpec};

pub const CHECKPOINT_FILE: &str = "checkpoint.json";

const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// What the chunks were written for (see [`fingerprint`]).
    pub fingerprint: String,
    /// The run the chunks belong to: a resumed run keeps it.
    pub run: String,
    /// The key of the last row of the last chunk, as the source's driver printed it.
    pub last_key: Vec<String>,
    /// Every chunk sealed so far, in order: `00000001…` to `n`.
    pub chunks: Vec<ChunkRecord>,
}

/// Sums of a checkpoint's chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resumed {
    pub rows: u64,
    pub bytes_uncompressed: u64,
    pub bytes_compressed: u64,
    pub chunks: u64,
}

impl Checkpoint {
    pub fn new(
        fingerprint: String,
        run: String,
        last_key: Vec<String>,
        chunks: Vec<ChunkRecord>,
    ) -> Checkpoint {
        Checkpoint {
            version: VERSION,
            fingerprint,
            run,
            last_key,
            chunks,
        }
    }

    pub fn resumed(&self) -> Resumed {
        Resumed {
            rows: self.chunks.iter().map(|c| c.rows).sum(),
            bytes_uncompressed: self.chunks.iter().map(|c| c.bytes_uncompressed).sum(),
            bytes_compressed: self.chunks.iter().map(|c| c.bytes_compressed).sum(),
            chunks: self.chunks.len() as u64,
        }
    }

    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("a checkpoint serializes");
        write_private(&dir.join(CHECKPOINT_FILE), &json)
    }

    /// The checkpoint in `dir`, if there is one this subtask can resume from. `Err` says
    /// why one that exists cannot be used (the subtask then starts from its beginning).
    /// `uploads`: chunk files may be gone locally because they were uploaded.
    pub fn load(
        dir: &Path,
        fingerprint: &str,
        uploads: bool,
    ) -> Result<Option<Checkpoint>, String> {
        let path = dir.join(CHECKPOINT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let checkpoint: Checkpoint = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} cannot be read ({e})", path.display()))?;
        checkpoint.usable(dir, fingerprint, uploads)?;
        Ok(Some(checkpoint))
    }

    fn usable(&self, dir: &Path, fingerprint: &str, uploads: bool) -> Result<(), String> {
        if self.version != VERSION {
            return Err(format!("it has version {}, not {VERSION}", self.version));
        }
        if self.fingerprint != fingerprint {
            return Err(
                "it was written for another definition of the subtask or another \
                        file format"
                    .into(),
            );
        }
        if self.chunks.is_empty() || self.last_key.is_empty() {
            return Err("it lists no chunk or no key".into());
        }
        for (i, chunk) in self.chunks.iter().enumerate() {
            let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let expected = ChunkName {
                number,
                compression: crate::model::Compression::from_file_name(&chunk.name)
                    .ok_or_else(|| format!("its chunk {} has an unknown extension", chunk.name))?,
            }
            .to_string();
            if chunk.name != expected {
                return Err(format!("its chunk {} should be {expected}", chunk.name));
            }
            match std::fs::metadata(dir.join(&chunk.name)) {
                Ok(meta) if meta.len() == chunk.bytes_compressed => {}
                Ok(meta) => {
                    return Err(format!(
                        "its chunk {} has {} bytes, not the {} it recorded",
                        chunk.name,
                        meta.len(),
                        chunk.bytes_compressed
                    ));
                }
                // Uploaded, then deleted by the uploader (files.keep_local = false).
                Err(e) if e.kind() == io::ErrorKind::NotFound && uploads => {}
                Err(e) => return Err(format!("its chunk {} is not there ({e})", chunk.name)),
            }
        }
        Ok(())
    }

    /// Forget any checkpoint in `dir` (a subtask that completed, or starts over).
    pub fn remove(dir: &Path) -> io::Result<()> {
        match std::fs::remove_file(dir.join(CHECKPOINT_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// What a checkpoint must match to be resumed: the task's creation (`instance`), the
/// subtask's definition (table, columns, filter, partition, key) and how its chunks are
/// encoded. Anything else changed, and the subtask starts over.
pub fn fingerprint(instance: &str, spec: &SubtaskSpec, files: &FileSettings) -> String {
    let spec = SubtaskSpec {
        estimated_rows: None,
        largest_lob_row: None,
        ..spec.clone()
    };
    let encoded = serde_json::to_vec(&(
        instance,
        &spec,
        files.compression,
        files.delimiter,
        &files.null_string,
        files.rtrim,
        files.binary_format,
    ))
    .expect("a subtask serializes");
    hex::encode(Sha256::digest(&encoded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KeyKind, TableRef};

    fn spec() -> SubtaskSpec {
        SubtaskSpec {
            table: TableRef {
                catalog: None,
                schema: Some("public".into()),
                name: "t".into(),
            },
            columns: Vec::new(),
            left_out: Vec::new(),
            filter: None,
            partition: None,
            key: Some(KeyKind { columns: vec![0] }),
            estimated_rows: Some(10),
            largest_lob_row: None,
        }
    }

    fn chunk(dir: &Path, number: u32, bytes: &[u8]) -> ChunkRecord {
        let name = ChunkName {
            number,
            compression: crate::model::Compression::Gzip,
        }
        .to_string();
        std::fs::write(dir.join(&name), bytes).unwrap();
        ChunkRecord {
            name,
            rows: 2,
            bytes_uncompressed: 10,
            bytes_compressed: bytes.len() as u64,
            sha256: String::new(),
            lobs: Vec::new(),
        }
    }

    #[test]
    fn a_checkpoint_is_resumed_only_for_the_same_subtask_and_its_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let files = FileSettings::default();
        let print = fingerprint("task-1", &spec(), &files);
        assert_eq!(Checkpoint::load(dir.path(), &print, false), Ok(None));
        let checkpoint = Checkpoint {
            version: VERSION,
            fingerprint: print.clone(),
            run: "r1".into(),
            last_key: vec!["42".into()],
            chunks: vec![chunk(dir.path(), 1, b"abc"), chunk(dir.path(), 2, b"defg")],
        };
        checkpoint.save(dir.path()).unwrap();
        let loaded = Checkpoint::load(dir.path(), &print, false)
            .unwrap()
            .unwrap();
        assert_eq!(loaded, checkpoint);
        assert_eq!(loaded.resumed().rows, 4);
        assert_eq!(loaded.resumed().bytes_compressed, 7);

        // The estimate is not part of the definition; the task's creation and the format are.
        let mut estimated = spec();
        estimated.estimated_rows = Some(99);
        assert_eq!(fingerprint("task-1", &estimated, &files), print);
        assert_ne!(fingerprint("task-2", &spec(), &files), print);
        let semicolons = FileSettings {
            delimiter: b';',
            ..FileSettings::default()
        };
        let refused = Checkpoint::load(
            dir.path(),
            &fingerprint("task-1", &spec(), &semicolons),
            false,
        );
        assert!(refused.unwrap_err().contains("another definition"));

        // A chunk gone: uploaded (and deleted) when the mode uploads; lost otherwise.
        std::fs::remove_file(dir.path().join("00000002.csv.gz")).unwrap();
        assert!(
            Checkpoint::load(dir.path(), &print, true)
                .unwrap()
                .is_some()
        );
        let lost = Checkpoint::load(dir.path(), &print, false).unwrap_err();
        assert!(lost.contains("00000002.csv.gz is not there"), "{lost}");
        // A chunk of another size than recorded.
        std::fs::write(dir.path().join("00000001.csv.gz"), b"abcdef").unwrap();
        let changed = Checkpoint::load(dir.path(), &print, true).unwrap_err();
        assert!(changed.contains("has 6 bytes, not the 3"), "{changed}");

        std::fs::write(dir.path().join(CHECKPOINT_FILE), b"{ not json").unwrap();
        assert!(
            Checkpoint::load(dir.path(), &print, true)
                .unwrap_err()
                .contains("cannot be read")
        );
        Checkpoint::remove(dir.path()).unwrap();
        Checkpoint::remove(dir.path()).unwrap();
        assert_eq!(Checkpoint::load(dir.path(), &print, true), Ok(None));
    }
}
