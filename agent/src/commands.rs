//! The one-shot commands of `klaxon-agent`: `--check` (is the configuration valid, and
//! within `max_custom_metrics` on this host) and `--cost` (what it costs a month), and
//! the series guard the daemon applies before it publishes.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use crate::config::{ALL_MEASUREMENTS, ValidConfig};
use crate::instance::hostname;
use crate::metrics::cost::{
    MonthlyCost, PRICE_PER_METRIC_MONTH, PRICE_PER_THOUSAND_REQUESTS, biggest, count_series,
    reference_agent_series,
};
use crate::metrics::run::MetricsPlan;
use crate::metrics::sample::UnsupportedHost;

/// Why a host's metrics are refused.
#[derive(Debug, thiserror::Error)]
pub enum SeriesRefused {
    #[error(transparent)]
    Unsupported(#[from] UnsupportedHost),
    #[error(
        "this host would publish {total} custom metrics, over max_custom_metrics = {limit}: {biggest}"
    )]
    OverLimit { total: usize, limit: usize, biggest: String },
}

/// Why `--cost` printed no report.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error(transparent)]
    Refused(#[from] SeriesRefused),
    #[error(transparent)]
    Unsupported(#[from] UnsupportedHost),
    #[error("cannot print the report")]
    Write(#[from] io::Error),
}

/// `--check`: prints `FILE: ok`, or every problem as `FILE:LINE:COL: message`; returns
/// whether the configuration is valid.
pub fn check(path: &Path, out: &mut impl Write) -> io::Result<bool> {
    let problems = match ValidConfig::check(path) {
        Ok(config) => match host_series(&config, &placeholder_host(&config)) {
            Ok(_) => {
                writeln!(out, "{}: ok", path.display())?;
                return Ok(true);
            }
            Err(problem) => format!("{}:1:1: {problem}", path.display()),
        },
        Err(problems) => problems.to_string(),
    };
    writeln!(out, "{problems}")?;
    Ok(false)
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
pub fn host_series(
    config: &ValidConfig,
    host: &[(String, String)],
) -> Result<BTreeMap<String, usize>, SeriesRefused> {
    let Some(metrics) = &config.metrics else { return Ok(BTreeMap::new()) };
    let counts = count_series(&metrics.plan, host)?;
    let total: usize = counts.values().sum();
    if total > metrics.max_custom_metrics {
        return Err(SeriesRefused::OverLimit {
            total,
            limit: metrics.max_custom_metrics,
            biggest: biggest(&counts, 5),
        });
    }
    Ok(counts)
}

/// `--cost`: this configuration's custom metrics and calls a month on this host, beside
/// the amazon-cloudwatch-agent's "Standard" set; as text, or (`json`) one JSON object.
pub fn print_cost(config: &ValidConfig, json: bool, out: &mut impl Write) -> Result<(), CostError> {
    let Some(metrics) = &config.metrics else {
        writeln!(out, "metrics are disabled: no custom metrics, no PutMetricData calls")?;
        return Ok(());
    };
    let host = placeholder_host(config);
    let counts = host_series(config, &host)?;
    let ours = MonthlyCost::of(counts.values().sum(), metrics.plan.flush_interval);
    let all_plan = MetricsPlan {
        measurements: ALL_MEASUREMENTS.iter().map(|m| (*m).to_owned()).collect(),
        ..metrics.plan.clone()
    };
    let all = count_series(&all_plan, &host)?;
    let reference = MonthlyCost::of(reference_agent_series(&all), metrics.plan.flush_interval);
    if json {
        let report = serde_json::json!({ "series": counts, "per_host": ours, "reference_agent_standard": reference });
        writeln!(out, "{report}")?;
        return Ok(());
    }
    for (name, count) in &counts {
        writeln!(out, "{name:<28} {count:>4}")?;
    }
    writeln!(out, "klaxon-agent, this configuration, per host: {ours}")?;
    writeln!(out, "amazon-cloudwatch-agent \"Standard\" set, same interval:  {reference}")?;
    writeln!(
        out,
        "(list prices: ${PRICE_PER_METRIC_MONTH:.2} per metric-month, ${PRICE_PER_THOUSAND_REQUESTS:.2} per 1,000 requests; the agent's own klaxon_agent_* counters are fleet-wide, a dozen metrics per account)"
    )?;
    Ok(())
}
