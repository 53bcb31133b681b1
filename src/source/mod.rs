//! ODBC sources. This module is the only one that talks to odbc-api: it builds connection
//! strings (with the options each driver needs to stream and keep memory flat), reads the
//! catalog, and fetches rows — in blocks into fixed buffers, or value by value for LOBs, or
//! in key ranges where the driver cannot stream. All of it blocks: callers run it on threads
//! of their own, never on the async runtime. PostgreSQL sources also have a native path
//! (`pg_copy`): the server's own COPY, writing the same bytes.

pub mod catalog;
pub mod connection;
pub mod drivers;
mod error;
pub mod fetch;
mod odbc_ini;
pub mod pg_copy;

pub use crate::model::Dialect;
pub use connection::{Source, holds_password, redact};
pub use drivers::DriverPolicy;
pub use error::SourceError;
