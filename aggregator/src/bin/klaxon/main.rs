//! `klaxon`: the command line for operators and auditors.

mod alerting;
mod cli;
mod logs;
mod rules;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    cli::Cli::parse().run()
}
