//! dbhaul moves table data out of relational databases: it reads tables over ODBC, writes
//! them as compressed CSV chunks with a manifest, uploads them to S3 and copies them into a
//! warehouse; agents do the work, a controller spreads it. `ARCHITECTURE.md` at the root of
//! the repository is the map, and its layering graph (enforced by `tests/layering.rs`) gives
//! the order from the bottom up; the modules below are listed alphabetically.

/// The extraction agent daemon: configure, serve, supervise subtasks.
pub mod agent;
/// The daemons' HTTP servers and their start-up; `remote`'s wire types and clients re-exported.
pub mod api;
/// The command line: the contract users script against, dispatch and exit codes.
pub mod cli;
/// Job files: parsed as written, then validated into domain types.
pub mod config;
/// The controller daemon: agents, tasks, dispatch and polling.
pub mod controller;
/// Where chunk files land: the local working folder and S3.
pub mod destination;
/// Tasks as XML files: export and import, never a secret.
pub mod export;
/// The words of the design (task, subtask, chunk, manifest) as plain types; no I/O.
pub mod model;
/// Connections made outside ODBC: PostgreSQL URLs as libpq reads them, TLS.
pub mod net;
/// The data path: extractor thread, CSV encoding, compressor, subtask supervision, and the
/// one subtask scheduler.
pub mod pipeline;
/// Turning a job and a source catalog into subtasks (tables and partitions).
pub mod planner;
/// What crosses the network (wire types) and the HTTPS clients that send it.
pub mod remote;
/// ODBC sources: connection strings, catalog, and block or row-wise fetching.
pub mod source;
/// The only module that opens redb: the daemons' stores.
pub mod store;
/// Logging, per-task log files and Prometheus metrics.
pub mod telemetry;
/// The copy stage's warehouses: PostgreSQL and Redshift, exactly once.
pub mod warehouse;

/// Make big allocations (CSV batches of a few MiB, fetch blocks, a driver's key-range
/// results) go back to the system when freed. Left alone, glibc raises its mmap threshold
/// to 32 MiB after the first such buffer is freed, and later ones, allocated on one
/// thread and freed on another, stay in its per-thread arenas: four MariaDB partitions at
/// once peaked at 120-140 MiB, 68-70 MiB with the threshold fixed (one partition: 63, then
/// 42-44 MiB). Fixed at 256 KiB the mmap calls cost 3 s of system CPU over `lineitem`; at
/// 4 MiB, 1.2 s (0.6 s left alone) for the same memory; at 8 MiB the batches stay in the
/// arenas again (120 MiB). It covers the ODBC drivers' own allocations too. Call first,
/// before any thread starts.
pub fn return_big_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    }
}
