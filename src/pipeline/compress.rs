//! The Compressor: takes encoded CSV batches, writes them through gzip into chunk files,
//! closes a chunk at the first row boundary after `chunk_mb` of compressed output, and at
//! the end writes the subtask's `manifest.json`. All of the subtask's file I/O happens here,
//! on the compressor's own arbiter thread, never on the system arbiter.
//!
//! Shape: [`ChunkRoller`] holds the logic and is tested without actix; [`Compressor`] is
//! the actor shell around it. Mailbox: [`Credits`] of [`COMPRESSOR_CREDITS`] batches.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;

use super::SubtaskContext;
use super::checkpoint::Checkpoint;
use super::credit::{BoundedSender, Credits};
use super::messages::{
    Abort, ChunkSealed, CsvBatch, LobPart, SealedFile, Stage, StageReport, ToUpload,
};
use crate::config::FileSettings;
use crate::config::files::write_private;
use crate::destination::ChunkWriter;
use crate::destination::local::{LobWriter, MANIFEST_FILE, io_failure};
use crate::model::chunk::{EntryMeta, FileFormat, LeftOutColumn, ManifestColumn, ManifestEntry};
use crate::model::{ChunkName, ChunkRecord, LobRecord, Manifest, SubtaskSpec, lob_file};
use crate::source::fetch::row_predicate;

/// Batches the compressor may have queued: a few MB each.
pub const COMPRESSOR_CREDITS: usize = 4;

/// Rolls chunk files: the compressor's logic without the actor.
pub struct ChunkRoller {
    dir: PathBuf,
    settings: FileSettings,
    current: Option<ChunkWriter>,
    next_number: u32,
    pub chunks: Vec<ChunkRecord>,
    /// The LOB file being written (`files.lob_objects`).
    lob: Option<LobWriter>,
    /// LOB files of rows not yet in a sealed chunk: they go with the next chunk sealed.
    pending_lobs: Vec<LobRecord>,
}

impl ChunkRoller {
    pub fn new(dir: PathBuf, settings: FileSettings) -> ChunkRoller {
        ChunkRoller::resume(dir, settings, Vec::new())
    }

    /// Go on after `chunks`, sealed by an earlier attempt of the same run.
    pub fn resume(dir: PathBuf, settings: FileSettings, chunks: Vec<ChunkRecord>) -> ChunkRoller {
        ChunkRoller {
            dir,
            settings,
            current: None,
            next_number: chunks.len() as u32 + 1,
            chunks,
            lob: None,
            pending_lobs: Vec::new(),
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Append a batch; returns the chunk it sealed, if the batch completed one.
    pub fn push(
        &mut self,
        bytes: &[u8],
        rows: u64,
        ends_row: bool,
    ) -> io::Result<Option<(ChunkRecord, PathBuf)>> {
        if !bytes.is_empty() {
            let writer = match &mut self.current {
                Some(writer) => writer,
                None => {
                    let name = ChunkName {
                        number: self.next_number,
                        compression: self.settings.compression,
                    };
                    self.next_number += 1;
                    self.current.insert(ChunkWriter::create(
                        &self.dir,
                        name,
                        self.settings.gzip_level,
                        self.settings.encryption_key.as_ref(),
                    )?)
                }
            };
            writer.write(bytes, rows)?;
        }
        // LOB files count towards the chunk's size: what waits on disk for the chunk to be
        // sealed (and uploaded) stays near `chunk_mb`.
        let lob_bytes: u64 = self.pending_lobs.iter().map(|l| l.bytes).sum();
        let full = self
            .current
            .as_ref()
            .is_some_and(|w| w.compressed_bytes() + lob_bytes >= self.settings.chunk_bytes);
        if ends_row && full {
            self.seal()
        } else {
            Ok(None)
        }
    }

    /// Seal the open chunk, if any.
    pub fn seal(&mut self) -> io::Result<Option<(ChunkRecord, PathBuf)>> {
        let Some(writer) = self.current.take() else {
            return Ok(None);
        };
        let (mut record, path) = writer.seal()?;
        record.lobs = std::mem::take(&mut self.pending_lobs);
        self.chunks.push(record.clone());
        Ok(Some((record, path)))
    }

    /// Write a piece of a LOB value to its own file; the file is sealed with the last
    /// piece and goes with the next chunk sealed.
    pub fn push_lob(&mut self, part: &LobPart) -> io::Result<()> {
        if part.first {
            self.lob = Some(LobWriter::create(&self.dir, &part.name)?);
        }
        let writer = self.lob.as_mut().ok_or_else(|| {
            io::Error::other(format!(
                "a piece of LOB file {} without its start",
                part.name
            ))
        })?;
        writer.write(&part.bytes)?;
        if part.last {
            let writer = self.lob.take().expect("open");
            self.pending_lobs.push(writer.seal()?);
        }
        Ok(())
    }

    /// Bytes of sealed chunks plus what the open chunk has written.
    pub fn bytes_out(&self) -> u64 {
        let sealed: u64 = self.chunks.iter().map(|c| c.bytes_compressed).sum();
        sealed + self.current.as_ref().map_or(0, |w| w.compressed_bytes())
    }

    /// Drop the open chunk without sealing it: its partial file is deleted (and a LOB
    /// file being written, too).
    pub fn discard(&mut self) {
        self.current = None;
        self.lob = None;
    }
}

/// How the compressor keeps a subtask resumable.
pub struct Resumable {
    /// [`super::checkpoint::fingerprint`] of the subtask.
    pub fingerprint: String,
    /// The checkpoint this attempt goes on from, if any.
    pub from: Option<Checkpoint>,
}

/// Where the compressor's output goes.
pub struct Outputs {
    /// Told of each sealed chunk: the subtask.
    pub sealed: Recipient<ChunkSealed>,
    /// The uploader, when the mode uploads: each sealed chunk, then the manifest.
    pub upload: Option<BoundedSender<ToUpload>>,
    pub report: Recipient<StageReport>,
}

/// The actor shell.
pub struct Compressor {
    context: Arc<SubtaskContext>,
    spec: Arc<SubtaskSpec>,
    run: Arc<str>,
    /// Set while the subtask is read in key order: a checkpoint is written at every seal.
    resumable: Option<Resumable>,
    /// The key of the last complete row received.
    last_key: Option<Vec<String>>,
    roller: Option<ChunkRoller>,
    credits: Credits,
    sealed: Recipient<ChunkSealed>,
    /// The uploader, when the mode uploads: each sealed chunk, then the manifest.
    upload: Option<BoundedSender<ToUpload>>,
    report: Recipient<StageReport>,
    rows: u64,
    bytes_in: u64,
    done: bool,
}

impl Compressor {
    pub fn new(
        context: Arc<SubtaskContext>,
        spec: Arc<SubtaskSpec>,
        run: Arc<str>,
        resumable: Option<Resumable>,
        credits: Credits,
        outputs: Outputs,
    ) -> Compressor {
        let Outputs {
            sealed,
            upload,
            report,
        } = outputs;
        let resumed = resumable
            .as_ref()
            .and_then(|r| r.from.as_ref())
            .map(Checkpoint::resumed)
            .unwrap_or_default();
        Compressor {
            context,
            spec,
            run,
            last_key: None,
            resumable,
            roller: None,
            credits,
            sealed,
            upload,
            report,
            rows: resumed.rows,
            bytes_in: resumed.bytes_uncompressed,
            done: false,
        }
    }

    /// Write the checkpoint that lists every chunk sealed so far; before any of them
    /// passes downstream.
    fn checkpoint(&mut self) -> Result<(), (String, io::Error)> {
        let (Some(resumable), Some(roller)) = (&self.resumable, &self.roller) else {
            return Ok(());
        };
        let Some(last_key) = self.last_key.clone() else {
            return Ok(());
        };
        let checkpoint = Checkpoint::new(
            resumable.fingerprint.clone(),
            self.run.to_string(),
            last_key,
            roller.chunks.clone(),
        );
        checkpoint
            .save(roller.dir())
            .map_err(|e| ("writing checkpoint.json".to_string(), e))
    }

    /// Note the key of the batch's last row. A row-ending batch of rows without a key (a
    /// NULL or unreadable key value) ends checkpointing for this run: a checkpoint must
    /// never point before rows already in a chunk.
    fn note_key(&mut self, batch: &mut CsvBatch) {
        if self.resumable.is_none() || !batch.ends_row || batch.rows == 0 {
            return;
        }
        match batch.last_key.take() {
            Some(key) => self.last_key = Some(key),
            None => {
                tracing::warn!(
                    task = %self.context.task,
                    subtask = %self.spec.id(),
                    "a row without a readable key value: this run can no longer resume \
                     from a checkpoint, and starts over if interrupted"
                );
                self.resumable = None;
                if let Some(roller) = &self.roller {
                    let _ = Checkpoint::remove(roller.dir());
                }
            }
        }
    }

    /// Send the chunks of the checkpoint this run resumes down the pipeline again: a chunk
    /// still on disk is uploaded again (an overwrite), one already uploaded and deleted
    /// goes on to the copier, which skips it if the warehouse holds it for this run.
    fn resend(
        &mut self,
        chunks: Vec<ChunkRecord>,
        dir: PathBuf,
    ) -> Result<(), (String, io::Error)> {
        let Some(upload) = &self.upload else {
            return Ok(());
        };
        for chunk in chunks {
            let path = dir.join(&chunk.name);
            let file = if path.exists() {
                SealedFile::Chunk { chunk, path }
            } else {
                SealedFile::Uploaded { chunk }
            };
            upload
                .send_blocking(|credit| ToUpload { file, credit })
                .map_err(|_| uploader_gone())?;
        }
        Ok(())
    }

    fn fail(&mut self, what: String, error: io::Error, ctx: &mut Context<Self>) {
        if let Some(roller) = &mut self.roller {
            roller.discard();
        }
        self.done = true;
        self.report.do_send(StageReport::Failed {
            stage: Stage::Compress,
            failure: io_failure(&what, &error),
        });
        ctx.stop();
    }

    fn finish(&mut self, ctx: &mut Context<Self>) -> Result<(), (String, io::Error)> {
        let roller = self.roller.as_mut().expect("started");
        let last = roller
            .seal()
            .map_err(|e| ("sealing the last chunk".to_string(), e))?;
        let chunks = roller.chunks.clone();
        if let Some((chunk, path)) = last {
            self.checkpoint()?;
            self.pass_on(chunk, path)?;
        }
        let manifest = build_manifest(&self.context, &self.spec, &self.run, self.rows, chunks);
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        let path = self.context.subtask_dir(&self.spec).join(MANIFEST_FILE);
        write_private(&path, &json).map_err(|e| ("writing manifest.json".to_string(), e))?;
        if let Some(upload) = &self.upload {
            let file = SealedFile::Manifest {
                path,
                sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&json)),
                manifest: Arc::new(manifest),
            };
            upload
                .send_blocking(|credit| ToUpload { file, credit })
                .map_err(|_| uploader_gone())?;
        }
        self.done = true;
        self.report.do_send(StageReport::Finished {
            stage: Stage::Compress,
            rows: self.rows,
        });
        ctx.stop();
        Ok(())
    }
}

impl Compressor {
    /// Tell the subtask, and hand the chunk to the uploader — waiting for a credit while
    /// the uploader is behind (this arbiter is the compressor's own: waiting here holds
    /// back nothing but the extractor, which is the point).
    fn pass_on(&mut self, chunk: ChunkRecord, path: PathBuf) -> Result<(), (String, io::Error)> {
        self.sealed.do_send(ChunkSealed {
            chunk: chunk.clone(),
            path: path.clone(),
        });
        if let Some(upload) = &self.upload {
            let file = SealedFile::Chunk { chunk, path };
            upload
                .send_blocking(|credit| ToUpload { file, credit })
                .map_err(|_| uploader_gone())?;
        }
        Ok(())
    }
}

fn uploader_gone() -> (String, io::Error) {
    (
        "passing a chunk to the uploader".into(),
        io::Error::other("the uploader stopped"),
    )
}

impl Actor for Compressor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.credits.mailbox_capacity());
        let relative = self.spec.id();
        let from = self.resumable.as_mut().and_then(|r| r.from.take());
        let keep: Vec<String> = from
            .iter()
            .flat_map(|c| c.chunks.iter())
            .flat_map(|c| {
                let lobs = c.lobs.iter().map(|l| lob_file(&l.name));
                std::iter::once(c.name.clone()).chain(lobs)
            })
            .collect();
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        let prepared = self
            .context
            .work
            .prepare_subtask_dir(&relative, &keep)
            .and_then(|dir| match &from {
                Some(_) => Ok(dir),
                None => Checkpoint::remove(&dir).map(|()| dir),
            });
        let dir = match prepared {
            Ok(dir) => dir,
            Err(e) => {
                let what = format!(
                    "preparing the folder {}",
                    self.context.subtask_dir(&self.spec).display()
                );
                return self.fail(what, e, ctx);
            }
        };
        let files = self.context.files.clone();
        let Some(from) = from else {
            self.roller = Some(ChunkRoller::new(dir, files));
            return;
        };
        self.last_key = Some(from.last_key);
        self.roller = Some(ChunkRoller::resume(dir.clone(), files, from.chunks.clone()));
        if let Err((what, e)) = self.resend(from.chunks, dir) {
            self.fail(what, e, ctx);
        }
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        // Wake an extractor waiting for a credit: it sees Closed and stops. In `Drop`
        // rather than `stopped`, so it happens even when the arbiter thread panicked.
        self.credits.close();
    }
}

impl Handler<CsvBatch> for Compressor {
    type Result = ();

    fn handle(&mut self, mut batch: CsvBatch, ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        self.note_key(&mut batch);
        let roller = self.roller.as_mut().expect("started");
        if let Some(part) = &batch.lob
            && let Err(e) = roller.push_lob(part)
        {
            let what = format!("writing LOB file {} of {}", part.name, self.spec.id());
            return self.fail(what, e, ctx);
        }
        let sealed = match roller.push(&batch.bytes, batch.rows, batch.ends_row) {
            Ok(sealed) => sealed,
            Err(e) => {
                let what = format!("writing a chunk of {}", self.spec.id());
                return self.fail(what, e, ctx);
            }
        };
        let bytes_out = roller.bytes_out();
        if let Some((chunk, path)) = sealed
            && let Err((what, e)) = self.checkpoint().and_then(|()| self.pass_on(chunk, path))
        {
            return self.fail(what, e, ctx);
        }
        self.rows += batch.rows;
        self.bytes_in += batch.bytes.len() as u64;
        self.bytes_in += batch.lob.as_ref().map_or(0, |l| l.bytes.len() as u64);
        self.report.do_send(StageReport::Progress {
            stage: Stage::Compress,
            rows: self.rows,
            bytes_in: self.bytes_in,
            bytes_out,
        });
        if batch.last
            && let Err((what, e)) = self.finish(ctx)
        {
            self.fail(what, e, ctx);
        }
        // The batch, and with it its credit, is dropped here: the extractor may send again.
    }
}

impl Handler<Abort> for Compressor {
    type Result = ();

    fn handle(&mut self, _: Abort, ctx: &mut Context<Self>) {
        if let Some(roller) = &mut self.roller {
            roller.discard();
        }
        self.done = true;
        ctx.stop();
    }
}

fn build_manifest(
    context: &SubtaskContext,
    spec: &SubtaskSpec,
    run: &str,
    rows: u64,
    chunks: Vec<ChunkRecord>,
) -> Manifest {
    let files = &context.files;
    let entries = match &context.target {
        Some(target) => chunks
            .iter()
            .map(|c| ManifestEntry {
                url: target.url_of(&target.key(context.task.as_str(), &spec.id(), &c.name)),
                mandatory: true,
                meta: EntryMeta {
                    content_length: c.bytes_compressed,
                },
            })
            .collect(),
        None => Vec::new(),
    };
    Manifest {
        version: 1,
        task: context.task.to_string(),
        run: run.to_string(),
        table: spec.table.to_string(),
        partition: spec.partition.as_ref().map(|p| p.name.clone()),
        predicate: row_predicate(&context.source, spec),
        columns: spec
            .columns
            .iter()
            .map(|c| ManifestColumn {
                name: c.name.clone(),
                source_type: c.source_type.clone(),
                lob: c.fetch.is_lob(),
                binary: c.fetch.is_binary(),
            })
            .collect(),
        left_out_columns: spec
            .left_out
            .iter()
            .map(|c| LeftOutColumn {
                name: c.name.clone(),
                source_type: c.source_type.clone(),
                reason: "LOB column and task.extract_lobs = false".into(),
            })
            .collect(),
        format: FileFormat {
            format: "csv",
            compression: files.compression,
            delimiter: (files.delimiter as char).to_string(),
            quote: "\"",
            null_string: files.null_string.clone(),
            header: false,
            encoding: "UTF-8",
            binary: files.binary_format.describe(),
            time_zone: "UTC",
            encryption: files
                .encryption_key
                .is_some()
                .then_some(crate::destination::encrypt::FORMAT_NAME),
        },
        rows,
        chunks,
        lob_folder: match (&context.target, files.lob_objects_over) {
            (Some(target), Some(_)) => {
                Some(target.url_of(&target.key(context.task.as_str(), &spec.id(), &lob_file(""))))
            }
            _ => None,
        },
        entries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Compression;

    #[test]
    fn chunks_roll_at_row_boundaries_after_the_size_is_reached() {
        let dir = tempfile::tempdir().unwrap();
        let settings = FileSettings {
            chunk_bytes: 1,
            compression: Compression::None,
            ..FileSettings::default()
        };
        let mut roller = ChunkRoller::new(dir.path().to_path_buf(), settings);
        // A batch that ends mid-row must not close the chunk, however big it is.
        assert!(roller.push(b"1,\"very long", 0, false).unwrap().is_none());
        let (first, _) = roller
            .push(b" value\"\n", 1, true)
            .unwrap()
            .expect("sealed");
        assert_eq!((first.name.as_str(), first.rows), ("00000001.csv", 1));
        let (second, _) = roller.push(b"2,x\n", 1, true).unwrap().expect("sealed");
        assert_eq!(second.name, "00000002.csv");
        assert!(roller.seal().unwrap().is_none(), "nothing open");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("00000001.csv")).unwrap(),
            "1,\"very long value\"\n"
        );
    }
}
