//! In-memory CloudWatch metrics and logs for tests, with fault injection: the metrics
//! hold one current value per series (every period of a query gets it), the logs a list
//! of events; the next calls fail with the faults given, in order, with the error codes
//! AWS answers with.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use super::SourceError;
use super::logs::LogApi;
use super::metrics::{MetricApi, QueryPoints, Request};
use klaxon_common::paginate::Page;

/// How one call goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Throttle,
    ServerError,
    Timeout,
    AccessDenied,
    ExpiredToken,
    ClockSkew,
}

impl Fault {
    fn error(self, api: &'static str) -> SourceError {
        let code = match self {
            Fault::Throttle => "ThrottlingException",
            Fault::ServerError => "InternalServiceError",
            Fault::Timeout => "network",
            Fault::AccessDenied => "AccessDenied",
            Fault::ExpiredToken => "ExpiredToken",
            Fault::ClockSkew => "RequestExpired",
        };
        SourceError { api, code: code.to_owned(), message: format!("{self:?} (injected)") }
    }
}

#[derive(Debug, Default)]
struct Stored {
    /// (namespace, metric, dimensions) → the value every period reports.
    values: BTreeMap<(String, String, BTreeMap<String, String>), f64>,
    /// (group, stream, time ms, message).
    events: Vec<(String, String, i64, String)>,
    faults: VecDeque<Fault>,
    calls: u64,
}

/// The fake; clones share one store.
#[derive(Debug, Clone, Default)]
pub struct FakeCloudWatch {
    stored: Arc<Mutex<Stored>>,
}

impl FakeCloudWatch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Stored> {
        self.stored.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The series `namespace`/`metric` with `dimensions` reports `value` from now on.
    pub fn set(&self, namespace: &str, metric: &str, dimensions: &[(&str, &str)], value: f64) {
        let dimensions = dimensions.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let key = (namespace.to_owned(), metric.to_owned(), dimensions.collect());
        self.lock().values.insert(key, value);
    }

    /// An event in `group`/`stream` at `time_ms`.
    pub fn log(&self, group: &str, stream: &str, time_ms: i64, message: &str) {
        self.lock().events.push((group.into(), stream.into(), time_ms, message.into()));
    }

    /// The next calls fail with `faults`, one each.
    pub fn fail_next(&self, faults: &[Fault]) {
        self.lock().faults.extend(faults);
    }

    /// Calls answered or failed so far.
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    fn call(&self, api: &'static str) -> Result<std::sync::MutexGuard<'_, Stored>, SourceError> {
        let mut stored = self.lock();
        stored.calls += 1;
        match stored.faults.pop_front() {
            Some(fault) => Err(fault.error(api)),
            None => Ok(stored),
        }
    }
}

impl MetricApi for FakeCloudWatch {
    async fn list_metrics(
        &self,
        namespace: &str,
        metric: &str,
        filters: &[(String, Option<String>)],
        _token: Option<String>,
    ) -> Result<Page<BTreeMap<String, String>>, SourceError> {
        let stored = self.call("ListMetrics")?;
        let fits = |dimensions: &BTreeMap<String, String>| {
            filters.iter().all(|(name, value)| match value {
                Some(value) => dimensions.get(name) == Some(value),
                None => dimensions.contains_key(name),
            })
        };
        let items = stored
            .values
            .keys()
            .filter(|(n, m, d)| n == namespace && m == metric && fits(d))
            .map(|(_, _, dimensions)| dimensions.clone())
            .collect();
        Ok((items, None))
    }

    async fn get_metric_data(
        &self,
        queries: &[(String, Request)],
        period: i32,
        start: i64,
        end: i64,
        _token: Option<String>,
    ) -> Result<Page<QueryPoints>, SourceError> {
        let stored = self.call("GetMetricData")?;
        let step = usize::try_from(period.max(1)).unwrap_or(60);
        let items = queries
            .iter()
            .filter_map(|(id, request)| {
                let Request::Stat { namespace, metric, dimensions, .. } = request else {
                    return None;
                };
                let key = (namespace.clone(), metric.clone(), dimensions.clone());
                let value = *stored.values.get(&key)?;
                Some((id.clone(), (start..end).step_by(step).map(|t| (t, value)).collect()))
            })
            .collect();
        Ok((items, None))
    }
}

impl LogApi for FakeCloudWatch {
    async fn filter_log_events(
        &self,
        group: &str,
        pattern: &str,
        start_ms: i64,
        end_ms: i64,
        _token: Option<String>,
    ) -> Result<Page<(String, i64)>, SourceError> {
        let stored = self.call("FilterLogEvents")?;
        // A quoted term, as the rules here use: the event contains it.
        let term = pattern.trim_matches('"');
        let items = stored
            .events
            .iter()
            .filter(|(g, _, t, m)| {
                g == group && (start_ms..=end_ms).contains(t) && m.contains(term)
            })
            .map(|(_, stream, t, _)| (stream.clone(), *t))
            .collect();
        Ok((items, None))
    }
}
