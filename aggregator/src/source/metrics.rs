//! Reading CloudWatch metrics for rules: ListMetrics finds a rule's series (cached, so
//! new instances of the auto-scaling group appear within a few cycles), GetMetricData
//! fetches them, at most 500 queries a call, every page.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, DimensionFilter, Metric, MetricDataQuery, MetricStat};

use super::SourceError;
use crate::engine::evaluate::Labels;
use crate::rules::model::MetricQuery;
use klaxon_common::paginate::{Page, all_pages};

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

/// One query's datapoints, as GetMetricData pages them: its id and (period start, value).
pub type QueryPoints = (String, Vec<(i64, f64)>);

/// Datapoints per query id: (period start, value), oldest first.
pub type Results = HashMap<String, Vec<(i64, f64)>>;

/// A cached ListMetrics answer's key: namespace, metric, `group_by`.
type SeriesKey = (String, String, Vec<String>);

/// The CloudWatch metrics calls rules need, one page at a time: the AWS edge of rule
/// data, which a fake replaces in tests. Caching, chunking and paging are above it.
pub trait MetricApi: Send + Sync + 'static {
    /// ListMetrics: the dimensions of each metric `namespace`/`metric` with `filters`
    /// (a name, and the value it must have or any).
    fn list_metrics(
        &self,
        namespace: &str,
        metric: &str,
        filters: &[(String, Option<String>)],
        token: Option<String>,
    ) -> impl Future<Output = Result<Page<BTreeMap<String, String>>, SourceError>> + Send;

    /// GetMetricData: per query id, (period start, value).
    fn get_metric_data(
        &self,
        queries: &[(String, Request)],
        period: i32,
        start: i64,
        end: i64,
        token: Option<String>,
    ) -> impl Future<Output = Result<Page<QueryPoints>, SourceError>> + Send;
}

/// CloudWatch through the AWS SDK.
pub struct SdkMetrics(pub Client);

impl MetricApi for SdkMetrics {
    async fn list_metrics(
        &self,
        namespace: &str,
        metric: &str,
        filters: &[(String, Option<String>)],
        token: Option<String>,
    ) -> Result<Page<BTreeMap<String, String>>, SourceError> {
        let filters = filters
            .iter()
            .map(|(name, value)| {
                DimensionFilter::builder().name(name).set_value(value.clone()).build()
            })
            .collect();
        let page = self
            .0
            .list_metrics()
            .namespace(namespace)
            .metric_name(metric)
            .set_dimensions(Some(filters))
            .set_next_token(token)
            .send()
            .await
            .map_err(|error| SourceError::from_sdk("ListMetrics", &error))?;
        let items = page
            .metrics()
            .iter()
            .map(|metric| {
                metric
                    .dimensions()
                    .iter()
                    .filter_map(|d| Some((d.name()?.to_owned(), d.value()?.to_owned())))
                    .collect()
            })
            .collect();
        Ok((items, page.next_token().map(str::to_owned)))
    }

    async fn get_metric_data(
        &self,
        queries: &[(String, Request)],
        period: i32,
        start: i64,
        end: i64,
        token: Option<String>,
    ) -> Result<Page<QueryPoints>, SourceError> {
        let queries: Vec<MetricDataQuery> =
            queries.iter().map(|(id, request)| to_query(id, request, period)).collect();
        let page = self
            .0
            .get_metric_data()
            .start_time(DateTime::from_secs(start))
            .end_time(DateTime::from_secs(end))
            .set_metric_data_queries(Some(queries))
            .set_next_token(token)
            .send()
            .await
            .map_err(|error| SourceError::from_sdk("GetMetricData", &error))?;
        let items = page
            .metric_data_results()
            .iter()
            .map(|result| {
                let points = result
                    .timestamps()
                    .iter()
                    .map(DateTime::secs)
                    .zip(result.values().iter().copied())
                    .collect();
                (result.id().unwrap_or_default().to_owned(), points)
            })
            .collect();
        Ok((items, page.next_token().map(str::to_owned)))
    }
}

/// CloudWatch metrics, with the series cache.
pub struct MetricSource<A: MetricApi = SdkMetrics> {
    api: A,
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
        MetricSource::with_api(SdkMetrics(client), refresh)
    }
}

impl<A: MetricApi> MetricSource<A> {
    /// A source over `api` (a fake in tests).
    pub fn with_api(api: A, refresh: Duration) -> Self {
        MetricSource { api, refresh, cache: HashMap::new(), calls: 0, metrics_requested: 0 }
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
        let mut filters: Vec<(String, Option<String>)> = query
            .dimensions
            .iter()
            .map(|(name, value)| (name.clone(), Some(value.clone())))
            .collect();
        filters.extend(group_by.iter().map(|name| (name.clone(), None)));
        let (api, calls) = (&self.api, &mut self.calls);
        let listed = all_pages(async |token| {
            *calls += 1;
            api.list_metrics(&query.namespace, &query.metric, &filters, token).await
        })
        .await?;
        let mut found: BTreeMap<Labels, BTreeMap<String, String>> = BTreeMap::new();
        for dimensions in listed {
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
            let (api, calls) = (&self.api, &mut self.calls);
            let pages = all_pages(async |token| {
                *calls += 1;
                api.get_metric_data(chunk, period, start, end, token).await
            })
            .await?;
            for (id, points) in pages {
                results.entry(id).or_default().extend(points);
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
