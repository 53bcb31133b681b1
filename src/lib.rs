//! dbhaul moves table data out of relational databases: it reads tables over ODBC, writes
//! them as compressed CSV chunks with a manifest, and (in later stages) uploads and copies
//! them into a warehouse. `ARCHITECTURE.md` at the root of the repository is the map; the
//! modules below are listed in reading order.

/// The command line: the contract of DESIGN.md, dispatch and exit codes.
pub mod cli;
/// Job files: parsed as written, then validated into domain types.
pub mod config;
/// The words of the design (task, subtask, chunk, manifest) as plain types; no I/O.
pub mod model;
/// The data path: extractor thread, CSV encoding, compressor, subtask supervision.
pub mod pipeline;
/// Turning a job and a source catalog into subtasks (tables and partitions).
pub mod planner;
/// ODBC sources: connection strings, catalog, and block or row-wise fetching.
pub mod source;
/// Where chunk files land: the local working folder and S3.
pub mod target;
/// Logging set-up.
pub mod telemetry;
/// The copy stage's warehouses: PostgreSQL and Redshift, exactly once.
pub mod warehouse;
