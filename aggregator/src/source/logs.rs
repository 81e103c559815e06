//! Counting log matches for log rules: FilterLogEvents from a saved cursor, paced under
//! the account's 5 requests/s limit with governor, counted into per-interval buckets so
//! a window's count is a sum; the cursor and buckets survive restarts, so matches are
//! never counted twice and no stretch of time is skipped.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::Client;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::SourceError;
use klaxon_common::manifest_record::MANIFEST_SUFFIX;
use klaxon_common::paginate::{Page, all_pages};

/// Events are read up to this long before now, for those still being ingested.
pub const SETTLE: Duration = Duration::from_secs(5);

/// Where one log rule has counted up to, and its recent counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogCursor {
    /// Unix ms: everything before was counted.
    pub counted_until_ms: i64,
    /// (bucket end ms, matches per stream) for the buckets still in a window.
    pub buckets: VecDeque<(i64, BTreeMap<String, u64>)>,
}

impl LogCursor {
    /// Matches per stream over the `window` ending at the cursor.
    pub fn window_counts(&self, window: Duration) -> BTreeMap<String, u64> {
        let from = self.counted_until_ms - i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for (_, bucket) in self.buckets.iter().filter(|(end, _)| *end > from) {
            for (stream, n) in bucket {
                *counts.entry(stream.clone()).or_default() += n;
            }
        }
        counts
    }

    fn prune(&mut self, window: Duration) {
        let from = self.counted_until_ms - i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        while self.buckets.front().is_some_and(|(end, _)| *end <= from) {
            self.buckets.pop_front();
        }
    }
}

/// The CloudWatch Logs call log rules need, one page at a time: the AWS edge, which a
/// fake replaces in tests. Pacing and paging are above it.
pub trait LogApi: Send + Sync + 'static {
    /// FilterLogEvents over `start_ms..=end_ms`: each matching event's stream and time.
    fn filter_log_events(
        &self,
        group: &str,
        pattern: &str,
        start_ms: i64,
        end_ms: i64,
        token: Option<String>,
    ) -> impl Future<Output = Result<Page<(String, i64)>, SourceError>> + Send;
}

/// CloudWatch Logs through the AWS SDK.
pub struct SdkLogs(pub Client);

impl LogApi for SdkLogs {
    async fn filter_log_events(
        &self,
        group: &str,
        pattern: &str,
        start_ms: i64,
        end_ms: i64,
        token: Option<String>,
    ) -> Result<Page<(String, i64)>, SourceError> {
        let page = self
            .0
            .filter_log_events()
            .log_group_name(group)
            .filter_pattern(pattern)
            .start_time(start_ms)
            .end_time(end_ms)
            .set_next_token(token)
            .send()
            .await
            .map_err(|error| SourceError::from_sdk("FilterLogEvents", &error))?;
        let items = page
            .events()
            .iter()
            .map(|e| {
                (
                    e.log_stream_name().unwrap_or_default().to_owned(),
                    e.timestamp().unwrap_or_default(),
                )
            })
            .collect();
        Ok((items, page.next_token().map(str::to_owned)))
    }
}

/// CloudWatch Logs, paced.
pub struct LogSource<A: LogApi = SdkLogs> {
    api: A,
    pace: DefaultDirectRateLimiter,
    pub calls: u64,
}

impl LogSource {
    /// `per_second`: this aggregator's share of the account's FilterLogEvents limit.
    pub fn new(client: Client, per_second: u32) -> Self {
        LogSource::with_api(SdkLogs(client), per_second)
    }
}

impl<A: LogApi> LogSource<A> {
    /// A source over `api` (a fake in tests).
    pub fn with_api(api: A, per_second: u32) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        LogSource { api, pace: RateLimiter::direct(Quota::per_second(rate)), calls: 0 }
    }

    /// Counts the matches of `pattern` in `group` from the cursor up to `now_ms - SETTLE`
    /// into a new bucket, and drops buckets that left the window.
    pub async fn advance(
        &mut self,
        cursor: &mut LogCursor,
        group: &str,
        pattern: &str,
        window: Duration,
        now_ms: i64,
    ) -> Result<(), SourceError> {
        let until = now_ms - i64::try_from(SETTLE.as_millis()).unwrap_or(0);
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let from =
            if cursor.counted_until_ms == 0 { until - window_ms } else { cursor.counted_until_ms };
        if until <= from {
            return Ok(());
        }
        let mut bucket: BTreeMap<String, u64> = BTreeMap::new();
        for (stream, _) in self.matches(group, pattern, from, until).await? {
            *bucket.entry(stream).or_default() += 1;
        }
        cursor.buckets.push_back((until, bucket));
        cursor.counted_until_ms = until;
        cursor.prune(window);
        Ok(())
    }
}

impl<A: LogApi> LogSource<A> {
    /// Every event matching `pattern` in `group` from `start_ms` to before `end_ms`, as
    /// (stream, timestamp ms), following every page at the paced rate.
    pub async fn matches(
        &mut self,
        group: &str,
        pattern: &str,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<(String, i64)>, SourceError> {
        let (api, pace, calls) = (&self.api, &self.pace, &mut self.calls);
        let found = all_pages(async |token| {
            pace.until_ready().await;
            *calls += 1;
            match api.filter_log_events(group, pattern, start_ms, end_ms - 1, token).await {
                // A group nobody has written to yet has no matches: not an outage.
                Err(error) if error.code == "ResourceNotFoundException" => {
                    warn!(
                        message = "A rule's log group does not exist (yet); counting no matches.",
                        group
                    );
                    Ok((Vec::new(), None))
                }
                page => page,
            }
        })
        .await?;
        // The agent's manifests are not the application's logs.
        Ok(found.into_iter().filter(|(stream, _)| !stream.ends_with(MANIFEST_SUFFIX)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_sum_the_buckets_inside_the_window() {
        let mut cursor = LogCursor::default();
        for (end, count) in [(60_000, 5), (120_000, 7), (180_000, 1)] {
            cursor.buckets.push_back((end, [("i-1".to_owned(), count)].into()));
            cursor.counted_until_ms = end;
        }
        assert_eq!(cursor.window_counts(Duration::from_secs(120))["i-1"], 8);
        cursor.prune(Duration::from_secs(60));
        assert_eq!(cursor.buckets.len(), 1);
    }
}
