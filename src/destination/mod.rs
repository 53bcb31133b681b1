//! Where chunk files land: the local working folder, then S3 or an S3-compatible device.
//! The rule every target keeps: a file appears under its final name only when it is
//! complete and durable.

pub mod encrypt;
pub mod local;
pub mod s3;

pub use local::{ChunkWriter, WorkDir};
pub use s3::{S3Error, S3Target};
