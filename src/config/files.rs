//! Files that hold secrets or state: written whole (temporary file, fsync, rename) and
//! readable by their owner only (0600; folders 0700): another local account reads none of it.

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Make a file readable and writable by its owner only.
pub fn restrict(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Create a folder (and its parents) that only its owner can enter.
pub fn private_dir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// What a file being written is named until it is whole: its name and this suffix. A
/// folder scan may delete such files (an interrupted write).
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Write a private file whole: a reader sees the old content or the new, never a mix, and
/// once this returns the new content survives a crash. The one way state and secrets are
/// written: a temporary `<name>.partial` (0600, never through a symbolic link), fsync,
/// rename, fsync of the folder; the temporary file is removed if any step fails.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(PARTIAL_SUFFIX);
    let tmp = path.with_file_name(name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        restrict(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
            _ => Ok(()),
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// This machine's host name, for defaults.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_file_is_written_whole_and_never_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!dir.path().join("state.json.partial").exists());

        // A link planted where the temporary file goes: refused, the file it points to
        // untouched, the link gone, the old content kept.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let planted = dir.path().join("state.json.partial");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        assert!(write_private(&path, b"three").is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(&planted).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
    }
}
