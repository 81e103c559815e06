//! What a configuration costs on this host: the custom metrics it publishes (each
//! distinct name + dimension set is billed per month) and the PutMetricData calls, at
//! list price; and the guard that refuses a configuration over `max_custom_metrics`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::run::{HEARTBEAT, MetricsPlan};
use super::sample::{HostSampler, UnsupportedHost};
use super::series::FlushWindow;
use super::sink::MAX_DATUMS_PER_CALL;

/// CloudWatch list prices, us-east-1, from aws.amazon.com/cloudwatch/pricing as read in
/// November 2025: custom metrics $0.30 per metric-month (first 10,000), API requests
/// (PutMetricData) $0.01 per 1,000.
pub const PRICE_PER_METRIC_MONTH: f64 = 0.30;
pub const PRICE_PER_THOUSAND_REQUESTS: f64 = 0.01;
const SECONDS_PER_MONTH: f64 = 30.0 * 24.0 * 3600.0;

/// The series this plan publishes on this host, per metric name (heartbeat included).
pub fn count_series(
    plan: &MetricsPlan,
    host: &[(String, String)],
) -> Result<BTreeMap<String, usize>, UnsupportedHost> {
    let mut sampler = HostSampler::new(plan.options.clone())?;
    std::thread::sleep(Duration::from_millis(100));
    let mut samples = sampler.sample();
    samples.retain(|sample| plan.measurements.iter().any(|m| m == sample.name));
    let mut window = FlushWindow::default();
    window.add(&samples, host);
    let mut counts = window.series_count(&plan.aggregations);
    counts.insert(HEARTBEAT.to_owned(), 1);
    Ok(counts)
}

/// A month of one host's metrics.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MonthlyCost {
    pub custom_metrics: usize,
    pub calls: f64,
    pub dollars: f64,
}

impl MonthlyCost {
    /// `series` custom metrics flushed every `flush_interval` (one call per 1,000 datums).
    pub fn of(series: usize, flush_interval: Duration) -> Self {
        let flushes = SECONDS_PER_MONTH / flush_interval.as_secs_f64().max(1.0);
        let calls = flushes * series.div_ceil(MAX_DATUMS_PER_CALL).max(1) as f64;
        let dollars =
            series as f64 * PRICE_PER_METRIC_MONTH + calls / 1000.0 * PRICE_PER_THOUSAND_REQUESTS;
        MonthlyCost { custom_metrics: series, calls, dollars }
    }
}

impl fmt::Display for MonthlyCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} custom metrics, {:.0} PutMetricData calls: ${:.2}/month",
            self.custom_metrics, self.calls, self.dollars
        )
    }
}

/// The amazon-cloudwatch-agent wizard's "Standard" set on the same host: cpu
/// usage_idle/iowait/user/system, mem_used_percent, swap_used_percent, and per mount
/// disk_used_percent and per device diskio_io_time.
pub fn reference_agent_series(counts_all: &BTreeMap<String, usize>) -> usize {
    let mounts = counts_all.get("disk_used_percent").copied().unwrap_or(1);
    let devices = counts_all.get("diskio_read_bytes").copied().unwrap_or(1);
    4 + 2 + mounts + devices
}

/// The biggest contributors, for a refusal message: "disk_used_percent 40, …".
pub fn biggest(counts: &BTreeMap<String, usize>, top: usize) -> String {
    let mut sorted: Vec<(&String, &usize)> = counts.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    sorted.iter().take(top).map(|(name, n)| format!("{name} {n}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_of_ten_metrics_flushed_every_minute() {
        let cost = MonthlyCost::of(10, Duration::from_secs(60));
        assert_eq!(cost.calls, 43_200.0);
        assert!((cost.dollars - (3.0 + 0.432)).abs() < 1e-9, "{}", cost.dollars);
        assert_eq!(MonthlyCost::of(2500, Duration::from_secs(60)).calls, 3.0 * 43_200.0);
    }

    #[test]
    fn the_biggest_contributors_come_first() {
        let counts: BTreeMap<String, usize> =
            [("a".to_owned(), 1), ("disk_used_percent".to_owned(), 40), ("net".to_owned(), 6)]
                .into();
        assert_eq!(biggest(&counts, 2), "disk_used_percent 40, net 6");
    }
}
