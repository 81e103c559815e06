//! `klaxon-agent`: the command line of the daemon. The work is in the library.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use klaxon_agent::config::ALL_MEASUREMENTS;
use klaxon_agent::config::ValidConfig;
use klaxon_agent::instance::{Imds, hostname, resolve_host};
use klaxon_agent::metrics::cost::{
    MonthlyCost, PRICE_PER_METRIC_MONTH, PRICE_PER_THOUSAND_REQUESTS, biggest, count_series,
    reference_agent_series,
};
use klaxon_agent::metrics::run::{MetricsLoop, MetricsPlan};
use klaxon_agent::metrics::sink::CloudWatchMetrics;
use klaxon_agent::pipeline::{HostNames, run_logs};
use klaxon_agent::ship::sink::CloudWatchLogs;
use klaxon_agent::stats::AgentStats;
use klaxon_agent::status::print_status;
use klaxon_common::logging::init_tracing;
use klaxon_common::service_manager;
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
    /// How --status and --cost print.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Log level or filter (tracing's syntax); overrides RUST_LOG.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
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
        print_status(&config, cli.format == Format::Json, &mut std::io::stdout().lock())
            .context("reading the state directory")
    } else if cli.cost {
        print_cost(&config, cli.format)
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

fn check(path: &Path) -> ExitCode {
    let problems = match ValidConfig::check(path) {
        Ok(config) => match host_series(&config, &placeholder_host(&config)) {
            Ok(_) => {
                println!("{}: ok", path.display());
                return ExitCode::SUCCESS;
            }
            Err(problem) => format!("{}:1:1: {problem}", path.display()),
        },
        Err(problems) => problems.to_string(),
    };
    println!("{problems}");
    ExitCode::FAILURE
}

/// The host's dimensions without asking IMDS, for `--check` and `--cost`.
fn placeholder_host(config: &ValidConfig) -> Vec<(String, String)> {
    let instance = config.instance_id.clone().unwrap_or_else(hostname);
    let mut host = vec![("InstanceId".to_owned(), instance)];
    if let Some(metrics) = &config.metrics {
        host.extend(metrics.append_dimensions.iter().map(|d| (d.clone(), "?".to_owned())));
    }
    host
}

/// The custom metrics this host would publish per name, or why that is refused: more
/// than `max_custom_metrics`, named with the biggest contributors.
fn host_series(
    config: &ValidConfig,
    host: &[(String, String)],
) -> Result<BTreeMap<String, usize>, String> {
    let Some(metrics) = &config.metrics else { return Ok(BTreeMap::new()) };
    let counts = count_series(&metrics.plan, host)?;
    let total: usize = counts.values().sum();
    if total > metrics.max_custom_metrics {
        return Err(format!(
            "this host would publish {total} custom metrics, over max_custom_metrics = {}: {}",
            metrics.max_custom_metrics,
            biggest(&counts, 5)
        ));
    }
    Ok(counts)
}

fn print_cost(config: &ValidConfig, format: Format) -> anyhow::Result<()> {
    let Some(metrics) = &config.metrics else {
        println!("metrics are disabled: no custom metrics, no PutMetricData calls");
        return Ok(());
    };
    let host = placeholder_host(config);
    let counts = host_series(config, &host).map_err(|problem| anyhow::anyhow!(problem))?;
    let ours = MonthlyCost::of(counts.values().sum(), metrics.plan.flush_interval);
    let all_plan = MetricsPlan {
        measurements: ALL_MEASUREMENTS.iter().map(|m| (*m).to_owned()).collect(),
        ..metrics.plan.clone()
    };
    let all = count_series(&all_plan, &host).map_err(|problem| anyhow::anyhow!(problem))?;
    let reference = MonthlyCost::of(reference_agent_series(&all), metrics.plan.flush_interval);
    if format == Format::Json {
        let report = serde_json::json!({ "series": counts, "per_host": ours, "reference_agent_standard": reference });
        println!("{report}");
        return Ok(());
    }
    for (name, count) in &counts {
        println!("{name:<28} {count:>4}");
    }
    println!("klaxon-agent, this configuration, per host: {ours}");
    println!("amazon-cloudwatch-agent \"Standard\" set, same interval:  {reference}");
    println!(
        "(list prices: ${PRICE_PER_METRIC_MONTH:.2} per metric-month, ${PRICE_PER_THOUSAND_REQUESTS:.2} per 1,000 requests; the agent's own klaxon_agent_* counters are fleet-wide, a dozen metrics per account)"
    );
    Ok(())
}

/// Why a run of the agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Running,
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
        service_manager::spawn_watchdog();
        loop {
            let append = config.metrics.as_ref().map(|m| m.append_dimensions.clone()).unwrap_or_default();
            let host = resolve_host(config.instance_id.as_deref(), imds, &append).await;
            host_series(&config, &host.dimensions).map_err(|problem| anyhow::anyhow!(problem))?;
            info!(message = "Agent running.", instance_id = %host.instance_id, logs = config.logs.len());
            service_manager::ready(&format!("shipping {} log sources as {}", config.logs.len(), host.instance_id));
            let (ending_tx, ending_rx) = tokio::sync::watch::channel(Ending::Running);
            let stopped = |mut ending: tokio::sync::watch::Receiver<Ending>| async move {
                let _ = ending.wait_for(|e| *e != Ending::Running).await;
            };
            let signals = async {
                let ending = tokio::select! {
                    _ = terminate.recv() => Ending::Stop,
                    _ = interrupt.recv() => Ending::Stop,
                    _ = hangup.recv() => Ending::Reload,
                };
                let _ = ending_tx.send(ending);
            };
            let names = HostNames { instance_id: host.instance_id.clone(), hostname: hostname() };
            let sink = CloudWatchLogs::new(aws_sdk_cloudwatchlogs::Client::new(&aws));
            let logs = run_logs(&config, names, sink, Arc::clone(&stats), stopped(ending_rx.clone()));
            let metrics = async {
                let Some(metrics) = &config.metrics else { return Ok(()) };
                let sink = CloudWatchMetrics::new(aws_sdk_cloudwatch::Client::new(&aws));
                let plan = metrics.plan.clone();
                let metrics_loop =
                    MetricsLoop::new(plan, host.dimensions.clone(), sink, &config.state_dir, Arc::clone(&stats))
                        .map_err(|problem| anyhow::anyhow!(problem))?;
                metrics_loop.run(stopped(ending_rx.clone())).await;
                Ok::<(), anyhow::Error>(())
            };
            let signals = async {
                signals.await;
                if *ending_rx.borrow() == Ending::Stop {
                    service_manager::stopping();
                }
            };
            let (logs, metrics, ()) = tokio::join!(logs, metrics, signals);
            logs?;
            metrics?;
            let ending = *ending_rx.borrow();
            if ending != Ending::Reload {
                info!(message = "Agent stopped.", events_sent = stats.events_sent.get(), retries = stats.retries.get());
                return Ok(());
            }
            match ValidConfig::load(path) {
                Ok(new) => {
                    info!(message = "Configuration reloaded.");
                    config = new;
                }
                Err(problems) => error!(message = "Reload refused; keeping the running configuration.", %problems),
            }
        }
    })
}
