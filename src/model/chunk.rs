//! Chunks and manifests. A chunk is one compressed CSV file of a subtask, numbered from 1;
//! its name is a pure function of its number and the compression, so a repeated run writes
//! the same names and overwrites rather than duplicates. The manifest lists every chunk with
//! its row count, sizes and SHA-256, and says how the files are encoded.

use std::fmt;

use serde::Serialize;

/// File-name extension of a chunk, set by the compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zstd,
    Bzip2,
    None,
}

impl Compression {
    pub const ALL: [Compression; 4] = [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Bzip2,
        Compression::None,
    ];

    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => "csv.gz",
            Compression::Zstd => "csv.zst",
            Compression::Bzip2 => "csv.bz2",
            Compression::None => "csv",
        }
    }

    /// The compression of a chunk file, from its name.
    pub fn from_file_name(name: &str) -> Option<Compression> {
        Compression::ALL
            .into_iter()
            .find(|c| name.ends_with(&format!(".{}", c.extension())))
    }
}

/// How binary values are written in the CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum BinaryFormat {
    /// `\x` and hex digits: PostgreSQL's bytea input form.
    #[serde(rename = "bytea-hex")]
    ByteaHex,
    /// Hex digits alone: what Redshift's COPY reads into VARBYTE.
    #[serde(rename = "hex")]
    Hex,
}

impl BinaryFormat {
    pub fn prefix(self) -> &'static [u8] {
        match self {
            BinaryFormat::ByteaHex => b"\\x",
            BinaryFormat::Hex => b"",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            BinaryFormat::ByteaHex => "bytea-hex: \\x and hex digits (PostgreSQL bytea)",
            BinaryFormat::Hex => "hex: hex digits (Redshift VARBYTE); empty is \"\"",
        }
    }
}

/// A chunk's number and file name: `00000001.csv.gz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkName {
    pub number: u32,
    pub compression: Compression,
}

impl fmt::Display for ChunkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08}.{}", self.number, self.compression.extension())
    }
}

/// One sealed chunk as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChunkRecord {
    pub name: String,
    pub rows: u64,
    pub bytes_uncompressed: u64,
    pub bytes_compressed: u64,
    /// SHA-256 of the file as stored, hex.
    pub sha256: String,
    /// The LOB objects of this chunk's rows (`files.lob_objects`): uploaded before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lobs: Vec<LobRecord>,
}

/// A LOB value written to its own file (`files.lob_objects`): its file name under the
/// subtask's `lobs/` folder, size and SHA-256. Its column holds the object's URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LobRecord {
    pub name: String,
    pub bytes: u64,
    /// SHA-256 of the value, hex.
    pub sha256: String,
}

/// The folder of a subtask's LOB files, locally and in the bucket.
pub const LOB_FOLDER: &str = "lobs";

/// A LOB file's path within its subtask's folder (`lobs/<name>`), locally and as the last
/// part of its object key.
pub fn lob_file(name: &str) -> String {
    format!("{LOB_FOLDER}/{name}")
}

/// What the copy stage needs of a manifest; an agent that only copies reads it back from
/// the bucket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct CopyManifest {
    pub run: String,
    pub rows: u64,
    pub chunks: Vec<ChunkRecord>,
}

impl From<&Manifest> for CopyManifest {
    fn from(manifest: &Manifest) -> CopyManifest {
        CopyManifest {
            run: manifest.run.clone(),
            rows: manifest.rows,
            chunks: manifest.chunks.clone(),
        }
    }
}

/// A column as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestColumn {
    pub name: String,
    pub source_type: String,
    pub lob: bool,
    pub binary: bool,
}

/// A column that was not extracted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftOutColumn {
    pub name: String,
    pub source_type: String,
    pub reason: String,
}

/// How the chunk files are encoded, so a reader needs nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileFormat {
    pub format: &'static str,
    pub compression: Compression,
    pub delimiter: String,
    pub quote: &'static str,
    /// How NULL is written; the empty string is always written quoted (`""`).
    pub null_string: String,
    pub header: bool,
    pub encoding: &'static str,
    /// How binary values are written.
    pub binary: &'static str,
    /// The session time zone timestamps were read in.
    pub time_zone: &'static str,
    /// How each chunk file is encrypted (`dbhaul decrypt` reads it back), when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<&'static str>,
}

/// One chunk as a Redshift COPY manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestEntry {
    /// `s3://bucket/key`.
    pub url: String,
    pub mandatory: bool,
    pub meta: EntryMeta,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryMeta {
    pub content_length: u64,
}

/// `manifest.json` of one subtask. In upload modes it also carries `entries`, which makes
/// it a Redshift COPY manifest as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    pub version: u32,
    pub task: String,
    /// This extraction of the subtask: the copy stage replaces what other runs loaded.
    pub run: String,
    pub table: String,
    pub partition: Option<String>,
    /// The full row predicate (filter and partition), if any.
    pub predicate: Option<String>,
    pub columns: Vec<ManifestColumn>,
    pub left_out_columns: Vec<LeftOutColumn>,
    pub format: FileFormat,
    pub rows: u64,
    pub chunks: Vec<ChunkRecord>,
    /// `files.lob_objects`: where the LOB objects the chunks list are (`s3://.../lobs/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lob_folder: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<ManifestEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_names_are_deterministic() {
        let cases = [
            (1, Compression::Gzip, "00000001.csv.gz"),
            (12, Compression::Gzip, "00000012.csv.gz"),
            (3, Compression::Zstd, "00000003.csv.zst"),
            (4, Compression::Bzip2, "00000004.csv.bz2"),
            (99_999_999, Compression::None, "99999999.csv"),
        ];
        for (number, compression, name) in cases {
            assert_eq!(
                ChunkName {
                    number,
                    compression
                }
                .to_string(),
                name
            );
            assert_eq!(Compression::from_file_name(name), Some(compression));
        }
    }
}
