//! The integration suite: one test binary (one link, one build of the `dbhaul` binary it
//! runs) against the real ODBC drivers and the real PostgreSQL and MariaDB servers.
//! `appliance/setup.sh` installs and starts what it needs; a missing service fails the
//! test that needs it, loudly, rather than skipping it.

mod common;

mod cli;
mod daemons;
mod errors;
mod extract;
mod failures;
mod layering;
mod observe;
mod packaging;
mod resilience;
mod security;
mod stages;
mod tables;
mod transfer;
mod types;
