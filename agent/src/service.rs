//! The daemon: resolves who this host is, runs the logs pipeline and the metrics loop
//! until SIGTERM or SIGINT, reloads the configuration on SIGHUP (keeping the running one
//! when the new one is invalid), and tells systemd where it stands.

use std::io;
use std::path::Path;
use std::sync::Arc;

use klaxon_common::aws::{Retries, load_sdk_config};
use klaxon_common::service_manager;
use klaxon_common::signals::{Asked, Signals, runtime};
use tokio::sync::watch;
use tracing::{error, info};

use crate::commands::{SeriesRefused, host_series};
use crate::config::ValidConfig;
use crate::instance::{Imds, hostname, resolve_host};
use crate::metrics::run::MetricsLoop;
use crate::metrics::sample::UnsupportedHost;
use crate::metrics::sink::CloudWatchMetrics;
use crate::pipeline::{HostNames, run_logs};
use crate::ship::sink::CloudWatchLogs;
use crate::stats::AgentStats;

/// Why the agent stopped other than when told to.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot start the runtime or the signal handlers")]
    Start(#[source] io::Error),
    #[error(transparent)]
    Refused(#[from] SeriesRefused),
    #[error(transparent)]
    Unsupported(#[from] UnsupportedHost),
    #[error("the logs pipeline failed")]
    Logs(#[source] io::Error),
}

/// Why a run of the agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Running,
    Stop,
    Reload,
}

/// Runs the agent with `config`, read from `path` (read again on SIGHUP), until stopped.
pub fn serve(path: &Path, mut config: ValidConfig) -> Result<(), ServiceError> {
    runtime().map_err(ServiceError::Start)?.block_on(async {
        let mut signals = Signals::install().map_err(ServiceError::Start)?;
        // The shippers retry, back off and count themselves: their calls get one attempt
        // each (SDK retries under theirs would multiply, uncounted). A metrics flush has
        // no loop of its own (a failed one waits in the spool for the next), so its calls
        // keep the SDK's few quick retries, which spare a late heartbeat.
        let logs_aws = load_sdk_config(Retries::Caller).await;
        let metrics_aws = load_sdk_config(Retries::Sdk).await;
        let stats = Arc::new(AgentStats::default());
        service_manager::spawn_watchdog();
        loop {
            let append = config.metrics.as_ref().map(|m| m.append_dimensions.clone()).unwrap_or_default();
            let host = resolve_host(config.instance_id.as_deref(), Imds::from_environment(), &append).await;
            host_series(&config, &host.dimensions)?;
            info!(message = "Agent running.", instance_id = %host.instance_id, logs = config.logs.len());
            service_manager::ready(&format!("shipping {} log sources as {}", config.logs.len(), host.instance_id));
            let (ending_tx, ending_rx) = watch::channel(Ending::Running);
            let stopped = |mut ending: watch::Receiver<Ending>| async move {
                let _ = ending.wait_for(|e| *e != Ending::Running).await;
            };
            let answer_signals = async {
                let ending = match signals.next().await {
                    Asked::Stop => Ending::Stop,
                    Asked::Reload => Ending::Reload,
                };
                let _ = ending_tx.send(ending);
                if ending == Ending::Stop {
                    service_manager::stopping();
                }
            };
            let names = HostNames { instance_id: host.instance_id.clone(), hostname: hostname() };
            let sink = CloudWatchLogs::new(aws_sdk_cloudwatchlogs::Client::new(&logs_aws));
            let logs = run_logs(&config, names, sink, Arc::clone(&stats), stopped(ending_rx.clone()));
            let metrics = async {
                let Some(metrics) = &config.metrics else { return Ok(()) };
                let sink = CloudWatchMetrics::new(aws_sdk_cloudwatch::Client::new(&metrics_aws));
                let plan = metrics.plan.clone();
                let metrics_loop =
                    MetricsLoop::new(plan, host.dimensions.clone(), sink, &config.state_dir, Arc::clone(&stats))?;
                metrics_loop.run(stopped(ending_rx.clone())).await;
                Ok::<(), UnsupportedHost>(())
            };
            let (logs, metrics, ()) = tokio::join!(logs, metrics, answer_signals);
            logs.map_err(ServiceError::Logs)?;
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
