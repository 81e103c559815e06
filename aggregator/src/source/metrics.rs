//! Reading CloudWatch metrics for rules: ListMetrics finds a rule's series (cached, so
//! new instances of the auto-scaling group appear within a few cycles), GetMetricData
//! fetches them, at most 500 queries a call, every page.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, DimensionFilter, Metric, MetricDataQuery, MetricStat};

use super::SourceError;
use crate::engine::evaluate::Labels;
use crate::rules::model::MetricQuery;

/// GetMetricData's limit on queries in one call.
pub const MAX_QUERIES_PER_CALL: usize = 500;

/// One series a rule watches: its labels (the `group_by` dimensions) and all its dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub labels: Labels,
    pub dimensions: BTreeMap<String, String>,
}

/// One query of a GetMetricData call: a statistic of a series, or an expression.
#[derive(Debug, Clone)]
pub enum Request {
    Stat { namespace: String, metric: String, dimensions: BTreeMap<String, String>, stat: String },
    Expression(String),
}

/// Datapoints per query id: (period start, value), oldest first.
pub type Results = HashMap<String, Vec<(i64, f64)>>;

/// A cached ListMetrics answer's key: namespace, metric, `group_by`.
type SeriesKey = (String, String, Vec<String>);

/// CloudWatch metrics, with the series cache.
pub struct MetricSource {
    client: Client,
    /// How long a ListMetrics answer is reused (an empty one is not).
    refresh: Duration,
    cache: HashMap<SeriesKey, (Instant, Vec<Series>)>,
    /// Calls made, for the cost report.
    pub calls: u64,
    /// Metrics requested from GetMetricData (what it bills), for the cost report.
    pub metrics_requested: u64,
}

impl MetricSource {
    /// `refresh`: how long the series of a rule are reused before ListMetrics is asked
    /// again (the aggregator uses five evaluation intervals).
    pub fn new(client: Client, refresh: Duration) -> Self {
        MetricSource { client, refresh, cache: HashMap::new(), calls: 0, metrics_requested: 0 }
    }

    /// The series of `query` that carry every `group_by` dimension, one per label set
    /// (the one with the fewest other dimensions when several share labels).
    pub async fn series(
        &mut self,
        query: &MetricQuery,
        group_by: &[String],
    ) -> Result<Vec<Series>, SourceError> {
        let key = (query.namespace.clone(), query.metric.clone(), group_by.to_vec());
        if let Some((at, series)) = self.cache.get(&key)
            && at.elapsed() < self.refresh
            && !series.is_empty()
        {
            return Ok(series.clone());
        }
        let mut filters: Vec<DimensionFilter> = query
            .dimensions
            .iter()
            .map(|(name, value)| DimensionFilter::builder().name(name).value(value).build())
            .collect();
        filters.extend(group_by.iter().map(|name| DimensionFilter::builder().name(name).build()));
        let mut found: BTreeMap<Labels, BTreeMap<String, String>> = BTreeMap::new();
        let mut token = None;
        loop {
            self.calls += 1;
            let page = self
                .client
                .list_metrics()
                .namespace(&query.namespace)
                .metric_name(&query.metric)
                .set_dimensions(Some(filters.clone()))
                .set_next_token(token)
                .send()
                .await
                .map_err(|error| SourceError::from_sdk("ListMetrics", &error))?;
            for metric in page.metrics() {
                let dimensions: BTreeMap<String, String> = metric
                    .dimensions()
                    .iter()
                    .filter_map(|d| Some((d.name()?.to_owned(), d.value()?.to_owned())))
                    .collect();
                let labels: Labels = group_by
                    .iter()
                    .filter_map(|k| dimensions.get(k).map(|v| (k.clone(), v.clone())))
                    .collect();
                let fits = labels.len() == group_by.len()
                    && query.dimensions.iter().all(|(k, v)| dimensions.get(k) == Some(v));
                let fewer = found.get(&labels).is_none_or(|known| dimensions.len() < known.len());
                if fits && fewer {
                    found.insert(labels, dimensions);
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        let series: Vec<Series> =
            found.into_iter().map(|(labels, dimensions)| Series { labels, dimensions }).collect();
        self.cache.insert(key, (Instant::now(), series.clone()));
        Ok(series)
    }

    /// Runs `requests` (id, query; ids match `^[a-z][a-zA-Z0-9_]*$`) over `start..end`
    /// at `period`, in calls of at most 500 queries, following every page.
    pub async fn fetch(
        &mut self,
        requests: &[(String, Request)],
        period: Duration,
        start: i64,
        end: i64,
    ) -> Result<Results, SourceError> {
        let period = i32::try_from(period.as_secs()).unwrap_or(60);
        let mut results: Results = HashMap::new();
        for chunk in requests.chunks(MAX_QUERIES_PER_CALL) {
            self.metrics_requested +=
                chunk.iter().filter(|(_, r)| matches!(r, Request::Stat { .. })).count() as u64;
            let queries: Vec<MetricDataQuery> =
                chunk.iter().map(|(id, request)| to_query(id, request, period)).collect();
            let mut token = None;
            loop {
                self.calls += 1;
                let page = self
                    .client
                    .get_metric_data()
                    .start_time(DateTime::from_secs(start))
                    .end_time(DateTime::from_secs(end))
                    .set_metric_data_queries(Some(queries.clone()))
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|error| SourceError::from_sdk("GetMetricData", &error))?;
                for result in page.metric_data_results() {
                    let id = result.id().unwrap_or_default().to_owned();
                    let points = result
                        .timestamps()
                        .iter()
                        .map(DateTime::secs)
                        .zip(result.values().iter().copied());
                    results.entry(id).or_default().extend(points);
                }
                token = page.next_token().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
        }
        for points in results.values_mut() {
            points.sort_by_key(|(t, _)| *t);
        }
        Ok(results)
    }
}

fn to_query(id: &str, request: &Request, period: i32) -> MetricDataQuery {
    match request {
        Request::Stat { namespace, metric, dimensions, stat } => {
            let dimensions =
                dimensions.iter().map(|(k, v)| Dimension::builder().name(k).value(v).build());
            let metric = Metric::builder()
                .namespace(namespace)
                .metric_name(metric)
                .set_dimensions(Some(dimensions.collect()))
                .build();
            let stat = MetricStat::builder().metric(metric).period(period).stat(stat).build();
            MetricDataQuery::builder().id(id).metric_stat(stat).return_data(true).build()
        }
        Request::Expression(expression) => MetricDataQuery::builder()
            .id(id)
            .expression(expression)
            .period(period)
            .return_data(true)
            .build(),
    }
}
