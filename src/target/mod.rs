//! Where chunk files land. For now the local working folder; S3 and S3-compatible targets
//! arrive with the upload stage. The rule every target keeps: a file appears under its
//! final name only when it is complete and durable.

pub mod local;

pub use local::{ChunkWriter, WorkDir};
