//! `klaxon-agent`: the command line of the daemon. The work is in the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use klaxon_agent::config::ValidConfig;
use klaxon_agent::instance::{Imds, hostname, resolve_instance_id};
use klaxon_agent::pipeline::{HostNames, run_logs};
use klaxon_agent::ship::sink::CloudWatchLogs;
use klaxon_agent::stats::AgentStats;
use klaxon_agent::status::print_status;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info};

/// Tails log files and samples host metrics, and ships them to CloudWatch.
#[derive(Debug, Parser)]
#[command(name = "klaxon-agent", version)]
struct Cli {
    /// The agent's configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration and exit: 0 when valid, 1 printing every problem as
    /// FILE:LINE:COL: message (configured files this user cannot read included).
    #[arg(long, conflicts_with_all = ["status", "cost"])]
    check: bool,
    /// Print, from the state directory, each file's identity, acknowledged offset and
    /// bytes behind, then exit.
    #[arg(long, conflicts_with = "cost")]
    status: bool,
    /// Print the custom metrics and API calls per month this configuration implies on
    /// this host, with their list price, then exit.
    #[arg(long)]
    cost: bool,
    /// Log level or filter (tracing's syntax); overrides RUST_LOG.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_level.as_deref());
    if cli.check {
        return check(&cli.config);
    }
    let config = match ValidConfig::load(&cli.config) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("{problems}");
            return ExitCode::FAILURE;
        }
    };
    let result = if cli.status {
        print_status(&config, &mut std::io::stdout().lock()).context("reading the state directory")
    } else if cli.cost {
        Err(anyhow::anyhow!("--cost is not built yet"))
    } else {
        serve(&cli.config, config)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("klaxon-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(level: Option<&str>) {
    let filter = level
        .map(tracing_subscriber::EnvFilter::new)
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    // journald adds the time; colour only on a terminal and never with NO_COLOR.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .without_time()
        .init();
}

fn check(path: &Path) -> ExitCode {
    match ValidConfig::check(path) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            println!("{problems}");
            ExitCode::FAILURE
        }
    }
}

/// Why a run of the pipeline ended.
enum Ending {
    Stop,
    Reload,
}

fn serve(path: &Path, mut config: ValidConfig) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let imds = Imds::from_disabled_variable(std::env::var("AWS_EC2_METADATA_DISABLED").ok().as_deref());
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_attempt_timeout(Duration::from_secs(30))
            .build();
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts).load().await;
        let stats = Arc::new(AgentStats::default());
        loop {
            let instance_id = resolve_instance_id(config.instance_id.as_deref(), imds).await;
            info!(message = "Agent running.", %instance_id, files = config.logs.len());
            let names = HostNames { instance_id, hostname: hostname() };
            let sink = CloudWatchLogs::new(aws_sdk_cloudwatchlogs::Client::new(&aws));
            let (ending_tx, ending_rx) = tokio::sync::oneshot::channel();
            let signals = async {
                let ending = tokio::select! {
                    _ = terminate.recv() => Ending::Stop,
                    _ = interrupt.recv() => Ending::Stop,
                    _ = hangup.recv() => Ending::Reload,
                };
                let _ = ending_tx.send(ending);
            };
            run_logs(&config, names, sink, Arc::clone(&stats), signals).await?;
            match ending_rx.await.unwrap_or(Ending::Stop) {
                Ending::Stop => {
                    info!(message = "Agent stopped.", events_sent = stats.events_sent.get(), retries = stats.retries.get());
                    return Ok(());
                }
                Ending::Reload => match ValidConfig::load(path) {
                    Ok(new) => {
                        info!(message = "Configuration reloaded.");
                        config = new;
                    }
                    Err(problems) => error!(message = "Reload refused; keeping the running configuration.", %problems),
                },
            }
        }
    })
}
