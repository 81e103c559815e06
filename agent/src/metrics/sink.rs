//! Where metric datums go: the [`MetricSink`] trait and its CloudWatch implementation
//! (PutMetricData, at most 1,000 datums a call; the SDK gzips large requests).

use std::future::Future;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use super::sample::Unit;
use super::series::Datum;

/// PutMetricData's limit on datums in one call.
pub const MAX_DATUMS_PER_CALL: usize = 1000;

/// PutMetricData failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PutMetricsFailed(pub String);

/// Sends `datums` in calls of at most [`MAX_DATUMS_PER_CALL`], in order, each call
/// once: on a failure, the datums not stored (that call's and the rest's) come back
/// with the error, so that a retry sends only those.
pub async fn put_all<'a>(
    sink: &impl MetricSink,
    namespace: &str,
    datums: &'a [Datum],
) -> Result<(), (&'a [Datum], PutMetricsFailed)> {
    for (index, chunk) in datums.chunks(MAX_DATUMS_PER_CALL).enumerate() {
        if let Err(error) = sink.put(namespace, chunk).await {
            return Err((&datums[index * MAX_DATUMS_PER_CALL..], error));
        }
    }
    Ok(())
}

/// Sends datums to a namespace in one PutMetricData call (at most
/// [`MAX_DATUMS_PER_CALL`]); an error means nothing of this call was stored.
pub trait MetricSink: Send + Sync + 'static {
    fn put(
        &self,
        namespace: &str,
        datums: &[Datum],
    ) -> impl Future<Output = Result<(), PutMetricsFailed>> + Send;
}

/// CloudWatch metrics through the AWS SDK.
#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchMetrics {
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        CloudWatchMetrics { client }
    }
}

impl MetricSink for CloudWatchMetrics {
    async fn put(&self, namespace: &str, datums: &[Datum]) -> Result<(), PutMetricsFailed> {
        let data = datums.iter().map(to_sdk).collect();
        self.client
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(data))
            .send()
            .await
            .map(drop)
            .map_err(|error| {
                PutMetricsFailed(aws_sdk_cloudwatch::error::DisplayErrorContext(error).to_string())
            })
    }
}

fn to_sdk(datum: &Datum) -> MetricDatum {
    let dimensions = datum
        .dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(name).value(value).build());
    MetricDatum::builder()
        .metric_name(&datum.name)
        .set_dimensions(Some(dimensions.collect()))
        .timestamp(DateTime::from_millis(datum.timestamp_ms))
        .set_values(Some(datum.values.clone()))
        .set_counts(Some(datum.counts.clone()))
        .unit(match datum.unit {
            Unit::Percent => StandardUnit::Percent,
            Unit::Bytes => StandardUnit::Bytes,
            Unit::BytesPerSecond => StandardUnit::BytesSecond,
            Unit::Count => StandardUnit::Count,
            Unit::CountPerSecond => StandardUnit::CountSecond,
            Unit::None => StandardUnit::None,
        })
        .build()
}
