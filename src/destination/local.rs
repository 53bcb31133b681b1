//! The local working folder: `<work>/<task>/<schema>.<table>[/<partition>]/`.
//!
//! Chunks are written to `<name>.partial`, fsynced, renamed to their final name, and the
//! folder fsynced, in that order (a rename is durable only once its folder is), so a crash or a full disk can leave a
//! `.partial` file behind but never a half-written file under a final name. A writer that
//! is dropped before it is sealed deletes its partial file.
//!
//! Everything written here stays inside the task's folder and is private: folders are
//! 0700 and files 0600, set explicitly so the umask does not matter; a subtask's folder is
//! built only from names [`crate::model::names`] accepts, no folder on the way may be a
//! symbolic link, and files are opened with `O_NOFOLLOW`. Deleting (an earlier run's chunks)
//! happens only inside such a folder, and never through a link.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use super::encrypt::{Encrypt, TaskKey};
use crate::model::{
    ChunkName, ChunkRecord, Compression, LOB_FOLDER, LobRecord, StageFailure, lob_file,
};

use crate::config::files::PARTIAL_SUFFIX;
/// The manifest's file name in every subtask folder.
pub const MANIFEST_FILE: &str = "manifest.json";
const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// The working folder of one task.
#[derive(Debug, Clone)]
pub struct WorkDir {
    root: PathBuf,
}

impl WorkDir {
    pub fn new(root: PathBuf) -> WorkDir {
        WorkDir { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Create the folder if needed and prove it is writable with a probe file. Returns
    /// the free space in bytes.
    pub fn check_writable(&self) -> io::Result<u64> {
        private_dir_all(&self.root)?;
        let probe = self.root.join(".dbhaul-write-probe");
        {
            let mut file = create_private(&probe)?;
            file.write_all(b"probe")?;
            file.sync_all()?;
        }
        fs::remove_file(&probe)?;
        free_bytes(&self.root)
    }

    /// The folder of the subtask named `relative` (`public.orders/part-003`).
    pub fn subtask_dir(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// A subtask's folder, emptied of what an earlier run left (chunks, partial files and
    /// the manifest, the manifest first so no manifest ever describes stale chunks).
    /// Whether an earlier extraction of the subtask started here and did not finish: its
    /// folder exists without a manifest.
    pub fn interrupted(&self, relative: &str) -> bool {
        let Ok(dir) = self.confined(relative) else {
            return false;
        };
        dir.is_dir() && !dir.join(MANIFEST_FILE).exists()
    }

    /// The subtask's folder, if `relative` is made of names a folder may have and no
    /// folder on the way from the task's is a symbolic link (the final check before
    /// anything is created or deleted there).
    pub fn confined(&self, relative: &str) -> io::Result<PathBuf> {
        let refuse = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the subtask folder `{}` would not stay inside the task's folder {}: {why}",
                    relative.escape_debug(),
                    self.root.display()
                ),
            )
        };
        let mut dir = self.root.clone();
        for part in relative.split('/') {
            crate::model::names::check_component("folder", part).map_err(refuse)?;
            dir.push(part);
            if let Ok(meta) = fs::symlink_metadata(&dir)
                && !meta.is_dir()
            {
                return Err(refuse(format!(
                    "{} is a symbolic link or a file, not a folder",
                    dir.display()
                )));
            }
        }
        debug_assert!(dir.starts_with(&self.root));
        Ok(dir)
    }

    /// Create the subtask's folder, or clear what an earlier run left in it (its manifest,
    /// partial files and chunks) except the chunks named in `keep` (a run that resumes).
    pub fn prepare_subtask_dir(&self, relative: &str, keep: &[&str]) -> io::Result<PathBuf> {
        let dir = self.confined(relative)?;
        private_dir_all(&self.root)?;
        let mut made = self.root.clone();
        for part in relative.split('/') {
            made.push(part);
            private_dir(&made)?;
        }
        // Made now: check again, so a link put in place meanwhile is not followed.
        let dir = self.confined(relative).map(|again| {
            debug_assert_eq!(again, dir);
            again
        })?;
        let manifest = dir.join(MANIFEST_FILE);
        if manifest.exists() {
            fs::remove_file(&manifest)?;
        }
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_chunk =
                name.ends_with(PARTIAL_SUFFIX) || Compression::from_file_name(&name).is_some();
            if is_chunk && !keep.contains(&name.as_ref()) && entry.file_type()?.is_file() {
                fs::remove_file(entry.path())?;
            }
        }
        // LOB files (`files.lob_objects`): those of kept chunks stay.
        let lobs = dir.join(LOB_FOLDER);
        if fs::symlink_metadata(&lobs).is_ok_and(|m| m.is_dir()) {
            for entry in fs::read_dir(&lobs)? {
                let entry = entry?;
                let name = lob_file(&entry.file_name().to_string_lossy());
                if !keep.contains(&name.as_str()) && entry.file_type()?.is_file() {
                    fs::remove_file(entry.path())?;
                }
            }
        }
        Ok(dir)
    }
}

/// Create `path` and its missing parents, private (0700, whatever the umask).
pub fn private_dir_all(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

/// One private folder (0700) whose parent exists; one that exists must be a folder, not a
/// symbolic link.
fn private_dir(path: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link or a file, not a folder; dbhaul does not follow links                  in a task's folder: remove it",
                path.display()
            ),
        ));
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

/// Create (or truncate) a private file (0600, whatever the umask), never through a
/// symbolic link (`O_NOFOLLOW`).
pub fn create_private(path: &Path) -> io::Result<File> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Free bytes on the filesystem that holds `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid C string and `stat` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(PARTIAL_SUFFIX);
    path.with_file_name(name)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// The file under the encoder: counts and hashes the bytes as stored.
struct HashingFile {
    file: BufWriter<File>,
    sha256: Sha256,
    written: u64,
}

impl HashingFile {
    /// Flush, fsync, rename `partial` to `final_path` (setting `renamed` once it is) and
    /// fsync the folder; the bytes written and their SHA-256, hex.
    fn persist(
        mut self,
        partial: &Path,
        final_path: &Path,
        renamed: &mut bool,
    ) -> io::Result<(u64, String)> {
        self.flush()?;
        let HashingFile {
            file,
            sha256,
            written,
        } = self;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(partial, final_path)?;
        *renamed = true;
        sync_dir(final_path)?;
        Ok((written, hex::encode(sha256.finalize())))
    }
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.sha256.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// What the encoder writes into: the file, or an encryption in front of it.
enum Stored {
    File(HashingFile),
    Encrypted(Box<Encrypt<HashingFile>>),
}

impl Stored {
    fn file(&self) -> &HashingFile {
        match self {
            Stored::File(file) => file,
            Stored::Encrypted(encrypt) => encrypt.get_ref(),
        }
    }

    fn finish(self) -> io::Result<HashingFile> {
        match self {
            Stored::File(file) => Ok(file),
            Stored::Encrypted(encrypt) => encrypt.finish(),
        }
    }
}

impl Write for Stored {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stored::File(file) => file.write(buf),
            Stored::Encrypted(encrypt) => encrypt.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stored::File(file) => file.flush(),
            Stored::Encrypted(encrypt) => encrypt.flush(),
        }
    }
}

enum Encoder {
    Gzip(Box<GzEncoder<Stored>>),
    Zstd(Box<zstd::stream::write::Encoder<'static, Stored>>),
    Bzip2(Box<bzip2::write::BzEncoder<Stored>>),
    Plain(Stored),
}

/// zstd's own default level.
pub const ZSTD_LEVEL: i32 = 3;
/// bzip2's block size, in 100 kB (1 to 9; 9 is the `bzip2` tool's default).
pub const BZIP2_LEVEL: u32 = 9;

/// One chunk being written.
pub struct ChunkWriter {
    name: ChunkName,
    partial: PathBuf,
    final_path: PathBuf,
    /// `None` once sealed.
    encoder: Option<Encoder>,
    uncompressed: u64,
    rows: u64,
    /// Set once the file is under its final name; until then, dropping deletes it.
    sealed: bool,
}

impl ChunkWriter {
    /// A chunk file being written; encrypted with `key` when there is one.
    pub fn create(
        dir: &Path,
        name: ChunkName,
        gzip_level: u32,
        key: Option<&TaskKey>,
    ) -> io::Result<ChunkWriter> {
        let final_path = dir.join(name.to_string());
        let partial = partial_path(&final_path);
        let hashing = HashingFile {
            file: BufWriter::with_capacity(WRITE_BUFFER_BYTES, create_private(&partial)?),
            sha256: Sha256::new(),
            written: 0,
        };
        let file = match key {
            Some(key) => Stored::Encrypted(Box::new(Encrypt::new(hashing, key)?)),
            None => Stored::File(hashing),
        };
        let encoder = match name.compression {
            Compression::Gzip => Encoder::Gzip(Box::new(GzEncoder::new(
                file,
                flate2::Compression::new(gzip_level),
            ))),
            Compression::Zstd => Encoder::Zstd(Box::new(zstd::stream::write::Encoder::new(
                file, ZSTD_LEVEL,
            )?)),
            Compression::Bzip2 => Encoder::Bzip2(Box::new(bzip2::write::BzEncoder::new(
                file,
                bzip2::Compression::new(BZIP2_LEVEL),
            ))),
            Compression::None => Encoder::Plain(file),
        };
        Ok(ChunkWriter {
            name,
            partial,
            final_path,
            encoder: Some(encoder),
            uncompressed: 0,
            rows: 0,
            sealed: false,
        })
    }

    pub fn name(&self) -> ChunkName {
        self.name
    }

    pub fn write(&mut self, bytes: &[u8], rows: u64) -> io::Result<()> {
        let encoder = self.encoder.as_mut().expect("write after seal");
        match encoder {
            Encoder::Gzip(gz) => gz.write_all(bytes)?,
            Encoder::Zstd(zstd) => zstd.write_all(bytes)?,
            Encoder::Bzip2(bz) => bz.write_all(bytes)?,
            Encoder::Plain(file) => file.write_all(bytes)?,
        }
        self.uncompressed += bytes.len() as u64;
        self.rows += rows;
        Ok(())
    }

    /// Bytes written to the file so far (compressed output; the encoder may hold a little
    /// more that is not flushed yet).
    pub fn compressed_bytes(&self) -> u64 {
        match &self.encoder {
            Some(Encoder::Gzip(gz)) => gz.get_ref().file().written,
            Some(Encoder::Zstd(zstd)) => zstd.get_ref().file().written,
            Some(Encoder::Bzip2(bz)) => bz.get_ref().file().written,
            Some(Encoder::Plain(file)) => file.file().written,
            None => 0,
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Finish the stream, fsync, rename into place and fsync the folder.
    pub fn seal(mut self) -> io::Result<(ChunkRecord, PathBuf)> {
        let encoder = self.encoder.take().expect("sealed twice");
        let stored = match encoder {
            Encoder::Gzip(gz) => (*gz).finish()?,
            Encoder::Zstd(zstd) => (*zstd).finish()?,
            Encoder::Bzip2(bz) => (*bz).finish()?,
            Encoder::Plain(file) => file,
        };
        let file = stored.finish()?;
        let (written, sha256) = file.persist(&self.partial, &self.final_path, &mut self.sealed)?;
        let record = ChunkRecord {
            name: self.name.to_string(),
            rows: self.rows,
            bytes_uncompressed: self.uncompressed,
            bytes_compressed: written,
            sha256,
            lobs: Vec::new(),
        };
        Ok((record, self.final_path.clone()))
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        if !self.sealed {
            // The run failed or stopped (perhaps while sealing, on a full disk): the
            // partial file must not survive looking like data.
            self.encoder = None;
            let _ = fs::remove_file(&self.partial);
        }
    }
}

/// One LOB value being written to its own file, `<subtask>/lobs/<name>` (see
/// `files.lob_objects`): `.partial` until sealed, like a chunk, and deleted if dropped
/// unsealed.
pub struct LobWriter {
    name: String,
    partial: PathBuf,
    final_path: PathBuf,
    file: Option<HashingFile>,
}

impl LobWriter {
    pub fn create(subtask_dir: &Path, name: &str) -> io::Result<LobWriter> {
        let dir = subtask_dir.join(LOB_FOLDER);
        private_dir(&dir)?;
        let final_path = dir.join(name);
        let partial = partial_path(&final_path);
        let file = HashingFile {
            file: BufWriter::with_capacity(WRITE_BUFFER_BYTES, create_private(&partial)?),
            sha256: Sha256::new(),
            written: 0,
        };
        Ok(LobWriter {
            name: name.to_string(),
            partial,
            final_path,
            file: Some(file),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file
            .as_mut()
            .expect("write after seal")
            .write_all(bytes)
    }

    /// Fsync, rename into place and fsync the folder.
    pub fn seal(mut self) -> io::Result<LobRecord> {
        let file = self.file.take().expect("sealed twice");
        let mut sealed = false;
        let persisted = file.persist(&self.partial, &self.final_path, &mut sealed);
        if !sealed {
            let _ = fs::remove_file(&self.partial);
        }
        let (bytes, sha256) = persisted?;
        Ok(LobRecord {
            name: self.name.clone(),
            bytes,
            sha256,
        })
    }
}

impl Drop for LobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.partial);
        }
    }
}

/// The local path of a subtask's LOB file.
pub fn lob_path(subtask_dir: &Path, name: &str) -> PathBuf {
    subtask_dir.join(lob_file(name))
}

/// An I/O error in words a user can act on; a full disk says so and says what to do.
/// The filesystem is full, or the user's quota used up.
pub fn is_full(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT)
    )
}

/// A stage's failure from a file error while doing `what`: a full folder may well have
/// room again soon (uploaded chunks are deleted, an operator frees space), so the subtask
/// is run again, from its checkpoint if any; any other file error is fatal.
pub fn io_failure(what: &str, error: &io::Error) -> StageFailure {
    let message = describe_io(what, error);
    match is_full(error) {
        true => StageFailure::Transient(message),
        false => StageFailure::Fatal(message),
    }
}

pub fn describe_io(what: &str, error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => format!(
            "{what}: the working folder is full ({error}); free space or choose another \
             folder with --work-dir, then run again"
        ),
        Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM) => format!(
            "{what}: the working folder is not writable ({error}); fix its permissions or \
             choose another folder with --work-dir"
        ),
        _ => format!("{what}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_full_folder_may_pass_and_other_file_errors_do_not() {
        let cases = [
            (libc::ENOSPC, true),
            (libc::EDQUOT, true),
            (libc::EACCES, false),
            (libc::EROFS, false),
            (libc::EIO, false),
        ];
        for (errno, retryable) in cases {
            let error = std::io::Error::from_raw_os_error(errno);
            let failure = super::io_failure("writing a chunk", &error);
            assert_eq!(failure.is_retryable(), retryable, "{failure}");
            assert_eq!(
                failure.to_string(),
                super::describe_io("writing a chunk", &error)
            );
        }
    }

    use super::*;
    use std::io::Read;

    /// Issue 23, finding 4: the agent's last line of defence. A subtask folder that climbs
    /// out, or runs through a symbolic link, is refused before anything is created or
    /// deleted; what is made is private whatever the umask.
    #[test]
    fn subtask_folders_stay_inside_the_task_folder_and_are_private() {
        let sandbox = tempfile::tempdir().unwrap();
        let outside = sandbox.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let marker = outside.join("00000001.csv.gz");
        fs::write(&marker, b"not ours").unwrap();
        let work = WorkDir::new(sandbox.path().join("work").join("task"));
        for climb in ["t/../../../outside", "../outside", "t/..", "a\\b", ""] {
            let error = work.prepare_subtask_dir(climb, &[]).unwrap_err();
            assert_eq!(
                error.kind(),
                io::ErrorKind::InvalidInput,
                "{climb}: {error}"
            );
        }
        fs::create_dir_all(work.root()).unwrap();
        std::os::unix::fs::symlink(&outside, work.root().join("public.t")).unwrap();
        let error = work
            .prepare_subtask_dir("public.t/part-001", &[])
            .unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        let error = work.prepare_subtask_dir("public.t", &[]).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert_eq!(fs::read(&marker).unwrap(), b"not ours");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);

        let dir = work.prepare_subtask_dir("public.u/part-001", &[]).unwrap();
        for folder in [work.root(), &dir, dir.parent().unwrap()] {
            let mode = fs::metadata(folder).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", folder.display());
        }
        let name = ChunkName {
            number: 1,
            compression: Compression::Gzip,
        };
        let (_, path) = ChunkWriter::create(&dir, name, 1, None)
            .unwrap()
            .seal()
            .unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A chunk name that is a link is not written through.
        let name2 = ChunkName {
            number: 2,
            compression: Compression::Gzip,
        };
        std::os::unix::fs::symlink(&marker, dir.join(format!("{name2}.partial"))).unwrap();
        assert!(ChunkWriter::create(&dir, name2, 1, None).is_err());
        assert_eq!(fs::read(&marker).unwrap(), b"not ours");
    }

    #[test]
    fn a_sealed_chunk_is_complete_and_hashed_and_an_unsealed_one_vanishes() {
        let dir = tempfile::tempdir().unwrap();
        let name = ChunkName {
            number: 1,
            compression: Compression::Gzip,
        };
        let mut writer = ChunkWriter::create(dir.path(), name, 3, None).unwrap();
        writer.write(b"1,a\n2,b\n", 2).unwrap();
        assert!(dir.path().join("00000001.csv.gz.partial").exists());
        let (record, path) = writer.seal().unwrap();
        assert_eq!(path, dir.path().join("00000001.csv.gz"));
        assert!(!dir.path().join("00000001.csv.gz.partial").exists());
        let stored = fs::read(&path).unwrap();
        assert_eq!(record.sha256, hex::encode(Sha256::digest(&stored)));
        assert_eq!(record.bytes_compressed, stored.len() as u64);
        assert_eq!((record.rows, record.bytes_uncompressed), (2, 8));
        let mut text = String::new();
        flate2::read::GzDecoder::new(&stored[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "1,a\n2,b\n");

        let name = ChunkName {
            number: 2,
            compression: Compression::Gzip,
        };
        let mut writer = ChunkWriter::create(dir.path(), name, 3, None).unwrap();
        writer.write(b"3,c\n", 1).unwrap();
        drop(writer);
        assert!(!dir.path().join("00000002.csv.gz.partial").exists());
        assert!(!dir.path().join("00000002.csv.gz").exists());
    }
}
