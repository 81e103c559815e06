//! The stack refuses what AWS refuses (moto alone accepts it), and accepts the largest
//! valid requests, so a batching bug fails here rather than in production.

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;

use crate::support::{now_secs, stack};

/// One PutLogEvents limit case: events as (millisecond offset, message length).
struct LogCase {
    name: &'static str,
    events: Vec<(i64, usize)>,
}

const MIB: usize = 1_048_576;
const HOUR_MS: i64 = 3_600_000;

fn log_cases_over_a_limit() -> Vec<LogCase> {
    vec![
        LogCase {
            name: "batch one byte over 1 MiB",
            events: vec![
                (0, MIB / 4 - 26),
                (1, MIB / 4 - 26),
                (2, MIB / 4 - 26),
                (3, MIB / 4 - 25),
            ],
        },
        LogCase { name: "10,001 events", events: (0..10_001).map(|i| (i, 10)).collect() },
        LogCase { name: "span over 24 h", events: vec![(-25 * HOUR_MS, 10), (0, 10)] },
        LogCase { name: "out of order", events: vec![(5, 10), (4, 10)] },
        LogCase { name: "one event over 1 MiB", events: vec![(0, MIB - 25)] },
        LogCase { name: "empty message", events: vec![(0, 0)] },
    ]
}

async fn put_log_case(
    logs: &aws_sdk_cloudwatchlogs::Client,
    events: &[(i64, usize)],
) -> Result<
    (),
    aws_sdk_cloudwatchlogs::error::SdkError<
        aws_sdk_cloudwatchlogs::operation::put_log_events::PutLogEventsError,
    >,
> {
    let base_ms = now_secs() * 1000;
    let batch = events
        .iter()
        .map(|&(offset, length)| {
            InputLogEvent::builder()
                .timestamp(base_ms + offset)
                .message("x".repeat(length))
                .build()
                .expect("event")
        })
        .collect();
    logs.put_log_events()
        .log_group_name("g")
        .log_stream_name("s")
        .set_log_events(Some(batch))
        .send()
        .await
        .map(drop)
}

#[tokio::test]
async fn put_log_events_over_any_limit_is_rejected_and_the_largest_valid_batches_pass() {
    let (stack, config) = stack().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    logs.create_log_group().log_group_name("g").send().await.expect("group");
    logs.create_log_stream().log_group_name("g").log_stream_name("s").send().await.expect("stream");

    let cases = log_cases_over_a_limit();
    for case in &cases {
        let error =
            put_log_case(&logs, &case.events).await.expect_err(case.name).into_service_error();
        assert!(error.is_invalid_parameter_exception(), "{}: {error:?}", case.name);
    }
    assert_eq!(stack.stats().expect("stats").rejected_total, cases.len() as u64);

    let exactly_one_mib = vec![(0, MIB / 4 - 26); 4];
    put_log_case(&logs, &exactly_one_mib).await.expect("a batch of exactly 1,048,576 bytes");
    let ten_thousand: Vec<_> = (0..10_000).map(|i| (i, 10)).collect();
    put_log_case(&logs, &ten_thousand).await.expect("10,000 events");
    let almost_a_day = vec![(-24 * HOUR_MS + 1, 10), (0, 10)];
    put_log_case(&logs, &almost_a_day).await.expect("a batch spanning just under 24 h");
    assert_eq!(stack.stats().expect("stats").rejected_total, cases.len() as u64);
}

fn datum(name: &str, values: Vec<f64>, dimensions: usize) -> MetricDatum {
    let dimensions = (0..dimensions)
        .map(|i| Dimension::builder().name(format!("d{i}")).value("v").build())
        .collect();
    MetricDatum::builder()
        .metric_name(name)
        .set_values(Some(values))
        .set_dimensions(Some(dimensions))
        .build()
}

/// Values that do not compress, to make a request large on the wire.
fn noisy_values(count: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64 * 1e6
        })
        .collect()
}

#[tokio::test]
async fn put_metric_data_over_any_limit_is_rejected() {
    let (stack, config) = stack().await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
    let over_a_limit: Vec<(&str, Vec<MetricDatum>)> = vec![
        ("1,001 datums", (0..1001).map(|i| datum(&format!("m{i}"), vec![1.0], 1)).collect()),
        ("151 values", vec![datum("m", vec![1.0; 151], 1)]),
        ("31 dimensions", vec![datum("m", vec![1.0], 31)]),
        ("NaN", vec![datum("m", vec![f64::NAN], 1)]),
        ("infinity", vec![datum("m", vec![f64::INFINITY], 1)]),
        (
            "over 1 MB on the wire",
            (0..1000).map(|i| datum(&format!("m{i}"), noisy_values(150, i), 1)).collect(),
        ),
        (
            "three weeks old",
            vec![
                MetricDatum::builder()
                    .metric_name("m")
                    .values(1.0)
                    .timestamp(DateTime::from_secs(now_secs() - 21 * 86_400))
                    .build(),
            ],
        ),
    ];
    for (name, data) in &over_a_limit {
        let result = cloudwatch
            .put_metric_data()
            .namespace("Klaxon")
            .set_metric_data(Some(data.clone()))
            .send()
            .await;
        let error = result.expect_err(name).into_service_error();
        assert!(error.is_invalid_parameter_value_exception(), "{name}: {error:?}");
    }
    assert_eq!(stack.stats().expect("stats").rejected_total, over_a_limit.len() as u64);

    let largest: Vec<_> = (0..1000).map(|i| datum(&format!("m{i}"), vec![1.0; 150], 30)).collect();
    cloudwatch
        .put_metric_data()
        .namespace("Klaxon")
        .set_metric_data(Some(largest))
        .send()
        .await
        .expect("1,000 datums of 150 values and 30 dimensions");
    assert_eq!(stack.stats().expect("stats").rejected_total, over_a_limit.len() as u64);
}
