//! Reading metrics back from the stack's CloudWatch, for assertions.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, DimensionFilter, Metric, MetricDataQuery, MetricStat};

/// One statistic of one series over the last `window`, per `period`: (epoch s, value), oldest first.
pub async fn statistic(
    cloudwatch: &Client,
    metric: &str,
    dimensions: &[(&str, &str)],
    stat: &str,
    period: Duration,
    window: Duration,
) -> Vec<(i64, f64)> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let dimensions = dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(*name).value(*value).build());
    let metric = Metric::builder()
        .namespace("Klaxon")
        .metric_name(metric)
        .set_dimensions(Some(dimensions.collect()))
        .build();
    let period = i32::try_from(period.as_secs()).unwrap_or(60);
    let query = MetricDataQuery::builder()
        .id("q")
        .metric_stat(MetricStat::builder().metric(metric).period(period).stat(stat).build())
        .build();
    let reply = cloudwatch
        .get_metric_data()
        .start_time(DateTime::from_secs(now - window.as_secs() as i64))
        .end_time(DateTime::from_secs(now + 60))
        .metric_data_queries(query)
        .send()
        .await
        .expect("GetMetricData");
    let mut points: Vec<(i64, f64)> = reply
        .metric_data_results()
        .iter()
        .flat_map(|result| {
            result.timestamps().iter().map(|t| t.secs()).zip(result.values().iter().copied())
        })
        .collect();
    points.sort_by_key(|(t, _)| *t);
    points
}

/// The distinct dimension sets of the series of `metric`, each sorted, the list sorted.
pub async fn dimension_sets(cloudwatch: &Client, metric: &str) -> Vec<Vec<(String, String)>> {
    let listed = cloudwatch
        .list_metrics()
        .namespace("Klaxon")
        .metric_name(metric)
        .set_dimensions(None::<Vec<DimensionFilter>>)
        .send()
        .await
        .expect("ListMetrics");
    let mut sets: Vec<Vec<(String, String)>> = listed
        .metrics()
        .iter()
        .map(|m| {
            let mut set: Vec<(String, String)> = m
                .dimensions()
                .iter()
                .map(|d| {
                    (
                        d.name().unwrap_or_default().to_owned(),
                        d.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            set.sort();
            set
        })
        .collect();
    sets.sort();
    // CloudWatch lists each metric once; moto repeats one per datum.
    sets.dedup();
    sets
}
