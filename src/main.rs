use std::process::ExitCode;

use clap::Parser;
use zerotrust_operator::cli::Cli;

fn main() -> ExitCode {
    Cli::parse().run()
}
