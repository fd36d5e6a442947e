use std::process::ExitCode;

/// jemalloc returns freed memory to the system (its background threads purge unused pages), so
/// the resident set follows what the caches hold after a burst, not the burst's peak.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::Parser;
use zerotrust_operator::cli::Cli;

fn main() -> ExitCode {
    Cli::parse().run()
}
