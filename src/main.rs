//! The `dbhaul` binary: parse the command line, hand it to [`dbhaul::cli::run`], and turn
//! the outcome into the exit status of the contract: 0 done, 1 the work failed, 2 bad usage
//! or configuration; before that, set the allocator to give big buffers back. Nothing else
//! lives here.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    dbhaul::return_big_allocations();
    let cli = dbhaul::cli::Cli::parse();
    ExitCode::from(dbhaul::cli::run(cli) as u8)
}
