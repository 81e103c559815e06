//! The metrics loop: sample every `sample_interval`, flush every `flush_interval` (one
//! PutMetricData call for the default set), the heartbeat with every flush and the
//! goodbye (heartbeat 0) on a clean stop; failed flushes spooled and back-filled.
//! It shares no queue with the log pipeline: a log backlog never delays metrics.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tracing::{debug, warn};

use super::sample::{HostSampler, SampleOptions, Unit, UnsupportedHost};
use super::series::{Datum, FlushWindow, SeriesKey};
use super::sink::{MetricSink, put_all};
use super::spool::Spool;
use crate::stats::AgentStats;
use klaxon_common::clock::unix_ms;

/// The heartbeat: 1 with every flush, 0 once on a clean stop.
pub const HEARTBEAT: &str = "klaxon_heartbeat";
/// How long the goodbye flush may take before it is spooled instead.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the metrics loop publishes, and how often.
#[derive(Debug, Clone)]
pub struct MetricsPlan {
    pub namespace: String,
    pub sample_interval: Duration,
    pub flush_interval: Duration,
    pub options: SampleOptions,
    /// Metric names published (all others are sampled but not sent).
    pub measurements: Vec<String>,
    pub aggregations: Vec<Vec<String>>,
    pub spool_max_age: Duration,
}

/// The metrics loop of one agent run.
pub struct MetricsLoop<S: MetricSink> {
    plan: MetricsPlan,
    /// InstanceId and the appended dimensions.
    host: Vec<(String, String)>,
    sink: S,
    spool: Spool,
    stats: Arc<AgentStats>,
    sampler: HostSampler,
    window: FlushWindow,
    reported: Vec<u64>,
}

impl<S: MetricSink> MetricsLoop<S> {
    pub fn new(
        plan: MetricsPlan,
        host: Vec<(String, String)>,
        sink: S,
        state_dir: &std::path::Path,
        stats: Arc<AgentStats>,
    ) -> Result<Self, UnsupportedHost> {
        let sampler = HostSampler::new(plan.options.clone())?;
        Ok(MetricsLoop {
            plan,
            host,
            sink,
            spool: Spool::new(state_dir),
            stats,
            sampler,
            window: FlushWindow::default(),
            reported: Vec::new(),
        })
    }

    /// Runs until `shutdown` completes, then says goodbye.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let start = Instant::now();
        let mut sample_tick =
            interval_at(start + self.plan.sample_interval, self.plan.sample_interval);
        let mut flush_tick =
            interval_at(start + self.plan.flush_interval, self.plan.flush_interval);
        sample_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        flush_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = sample_tick.tick() => self.sample(),
                _ = flush_tick.tick() => self.flush(1.0).await,
                () = &mut shutdown => break,
            }
        }
        if tokio::time::timeout(GOODBYE_TIMEOUT, self.flush(0.0)).await.is_err() {
            warn!(message = "The goodbye flush timed out.");
        }
    }

    fn sample(&mut self) {
        let mut samples = self.sampler.sample();
        samples.retain(|sample| self.plan.measurements.iter().any(|m| m == sample.name));
        self.window.add(&samples, &self.host);
    }

    /// Sends this window's datums, after any spooled ones; spools them if CloudWatch
    /// does not take them.
    pub async fn flush(&mut self, heartbeat: f64) {
        let now_ms = unix_ms(SystemTime::now());
        let mut datums = self.window.take_datums(now_ms, &self.plan.aggregations);
        datums.extend(self.own_datums(now_ms, heartbeat));
        let oldest =
            now_ms - i64::try_from(self.plan.spool_max_age.as_millis()).unwrap_or(i64::MAX);
        let dropped = self.spool.prune(oldest);
        if dropped > 0 {
            self.stats.metrics_dropped.add(dropped as u64);
            warn!(
                message = "Spooled metrics older than the spool's age were dropped.",
                datums = dropped
            );
        }
        deliver(&self.sink, &self.plan.namespace, &self.spool, &self.stats, now_ms, &datums).await;
    }
    /// The heartbeat (per host) and the agent's own counters (fleet-wide: summed over
    /// hosts, so they cost a fixed handful of metrics, not a handful per host).
    fn own_datums(&mut self, now_ms: i64, heartbeat: f64) -> Vec<Datum> {
        let mut own = FlushWindow::default();
        let instance: Vec<(String, String)> =
            self.host.iter().filter(|(name, _)| name == "InstanceId").cloned().collect();
        let key = |name: &str, unit: Unit, dimensions: Vec<(String, String)>| SeriesKey {
            name: name.to_owned(),
            unit,
            dimensions,
        };
        own.add_value(key(HEARTBEAT, Unit::None, instance), heartbeat);
        self.stats.metric_values_skipped.set(self.sampler.skipped);
        let counters = self.stats.counters();
        self.reported.resize(counters.len(), 0);
        for ((name, value), reported) in counters.iter().zip(self.reported.iter_mut()) {
            let delta = value.saturating_sub(*reported);
            *reported = *value;
            if delta > 0 {
                own.add_value(
                    key(&format!("klaxon_agent_{name}"), Unit::Count, vec![]),
                    delta as f64,
                );
            }
        }
        own.take_datums(now_ms, &[])
    }
}

/// Sends the spooled flushes, oldest first, then `datums`; what CloudWatch does not
/// take is spooled (a flush taken in part keeps only the rest), and nothing it took is
/// sent again.
async fn deliver(
    sink: &impl MetricSink,
    namespace: &str,
    spool: &Spool,
    stats: &AgentStats,
    now_ms: i64,
    datums: &[Datum],
) {
    let keep = |datums: &[Datum]| {
        if let Err(error) = spool.save(now_ms, datums) {
            warn!(message = "Cannot spool metrics; they are lost.", %error);
            stats.metrics_dropped.add(datums.len() as u64);
        }
    };
    for path in spool.pending() {
        let spooled = spool.load(&path);
        if let Err((rest, error)) = put_all(sink, namespace, &spooled).await {
            debug!(message = "CloudWatch still unavailable; spooling.", %error);
            if rest.len() < spooled.len()
                && let Err(error) = spool.replace(&path, rest)
            {
                warn!(message = "Cannot rewrite a spooled flush; part of it may be sent twice.", path = %path.display(), %error);
            }
            keep(datums);
            return;
        }
        let _ = spool.remove(&path);
    }
    if let Err((rest, error)) = put_all(sink, namespace, datums).await {
        warn!(message = "PutMetricData failed; the flush is spooled.", %error);
        keep(rest);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::metrics::sink::{MAX_DATUMS_PER_CALL, PutMetricsFailed};

    /// Stores what it is sent, failing the calls whose numbers it is given.
    #[derive(Default)]
    struct FlakySink {
        failing_calls: Vec<usize>,
        calls: Mutex<usize>,
        stored: Mutex<Vec<Datum>>,
    }

    impl MetricSink for FlakySink {
        async fn put(&self, _namespace: &str, datums: &[Datum]) -> Result<(), PutMetricsFailed> {
            assert!(datums.len() <= MAX_DATUMS_PER_CALL);
            let mut calls = self.calls.lock().expect("calls");
            *calls += 1;
            if self.failing_calls.contains(&calls) {
                return Err(PutMetricsFailed("InternalFailure".into()));
            }
            self.stored.lock().expect("stored").extend_from_slice(datums);
            Ok(())
        }
    }

    fn flush_of(timestamp_ms: i64, count: usize) -> Vec<Datum> {
        (0..count)
            .map(|n| Datum {
                name: format!("metric_{n}"),
                unit: Unit::Count,
                dimensions: vec![("InstanceId".into(), "i-1".into())],
                timestamp_ms,
                values: vec![1.0],
                counts: vec![1.0],
            })
            .collect()
    }

    #[tokio::test]
    async fn a_flush_whose_middle_call_fails_stores_every_datum_once() {
        let dir = tempfile::tempdir().expect("dir");
        let spool = Spool::new(dir.path());
        let stats = AgentStats::default();
        // 2,500 datums are three calls; the second fails, then the next flush's first.
        let sink = FlakySink { failing_calls: vec![2, 4], ..FlakySink::default() };
        let (first, second, third) =
            (flush_of(1_000, 2_500), flush_of(2_000, 10), flush_of(3_000, 10));
        deliver(&sink, "Klaxon", &spool, &stats, 1_000, &first).await;
        assert_eq!(sink.stored.lock().expect("stored").len(), 1_000, "the first call was stored");
        deliver(&sink, "Klaxon", &spool, &stats, 2_000, &second).await;
        deliver(&sink, "Klaxon", &spool, &stats, 3_000, &third).await;

        let stored = sink.stored.lock().expect("stored");
        let mut seen: Vec<(i64, &str)> =
            stored.iter().map(|d| (d.timestamp_ms, d.name.as_str())).collect();
        seen.sort_unstable();
        let before = seen.len();
        seen.dedup();
        assert_eq!(before, seen.len(), "a datum was stored twice");
        assert_eq!(seen.len(), first.len() + second.len() + third.len(), "a datum was lost");
        assert!(spool.pending().is_empty());
        assert_eq!(stats.metrics_dropped.get(), 0);
    }
}
