//! `klaxon-agent`: the command line of the daemon. The work is in the library.

use std::process::ExitCode;

use clap::Parser;
use klaxon_agent::cli::Cli;
use klaxon_common::logging::init_tracing;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_level.as_deref());
    cli.run()
}
