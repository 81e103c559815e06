//! The stack serves each AWS part Klaxon uses, through the current Rust SDK clients.

use std::process::Command;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, DimensionFilter, Metric, MetricDataQuery, MetricDatum, MetricStat, StandardUnit,
};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use aws_sdk_sns::types::MessageAttributeValue;
use klaxon_tests::inbox::Inbox;

use crate::support::{now_secs, stack};

fn instance(id: &str) -> Dimension {
    Dimension::builder().name("InstanceId").value(id).build()
}

fn stat_query(id: &str, instance_id: &str, stat: &str) -> MetricDataQuery {
    let metric = Metric::builder()
        .namespace("Klaxon")
        .metric_name("cpu_usage_active")
        .dimensions(instance(instance_id))
        .build();
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(MetricStat::builder().metric(metric).period(60).stat(stat).build())
        .build()
}

#[tokio::test]
async fn metrics_with_values_and_counts_read_back_through_the_cbor_front() {
    let (_stack, config) = stack().await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
    let minute = now_secs() / 60 * 60 - 120;
    let datum = |id: &str, values: &[f64], counts: &[f64]| {
        MetricDatum::builder()
            .metric_name("cpu_usage_active")
            .dimensions(instance(id))
            .timestamp(DateTime::from_secs(minute + 5))
            .set_values(Some(values.to_vec()))
            .set_counts(Some(counts.to_vec()))
            .unit(StandardUnit::Percent)
            .build()
    };
    cloudwatch
        .put_metric_data()
        .namespace("Klaxon")
        .metric_data(datum("i-01", &[12.5, 97.0, 3.0], &[4.0, 1.0, 5.0]))
        .metric_data(datum("i-02", &[50.0], &[2.0]))
        .send()
        .await
        .expect("PutMetricData");

    let reply = cloudwatch
        .get_metric_data()
        .start_time(DateTime::from_secs(minute - 600))
        .end_time(DateTime::from_secs(minute + 600))
        .metric_data_queries(stat_query("max1", "i-01", "Maximum"))
        .metric_data_queries(stat_query("min1", "i-01", "Minimum"))
        .metric_data_queries(stat_query("n1", "i-01", "SampleCount"))
        .metric_data_queries(stat_query("sum1", "i-01", "Sum"))
        .metric_data_queries(stat_query("max2", "i-02", "Maximum"))
        .send()
        .await
        .expect("GetMetricData");
    let value = |id: &str| {
        let result = reply
            .metric_data_results()
            .iter()
            .find(|r| r.id() == Some(id))
            .unwrap_or_else(|| panic!("no result {id}"));
        assert_eq!(result.timestamps(), [DateTime::from_secs(minute)], "{id}");
        result.values().to_vec()
    };
    assert_eq!(value("max1"), [97.0]);
    assert_eq!(value("min1"), [3.0]);
    assert_eq!(value("n1"), [10.0]);
    assert_eq!(value("sum1"), [12.5 * 4.0 + 97.0 + 15.0]);
    assert_eq!(value("max2"), [50.0]);

    let listed = cloudwatch
        .list_metrics()
        .namespace("Klaxon")
        .metric_name("cpu_usage_active")
        .dimensions(DimensionFilter::builder().name("InstanceId").build())
        .send()
        .await
        .expect("ListMetrics");
    let mut instances: Vec<_> =
        listed.metrics().iter().flat_map(|m| m.dimensions()).filter_map(|d| d.value()).collect();
    instances.sort_unstable();
    assert_eq!(instances, ["i-01", "i-02"]);
}

#[tokio::test]
async fn log_events_read_back_with_get_and_filter() {
    let (_stack, config) = stack().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    logs.create_log_group().log_group_name("/web/app").send().await.expect("CreateLogGroup");
    logs.create_log_stream()
        .log_group_name("/web/app")
        .log_stream_name("i-01")
        .send()
        .await
        .expect("CreateLogStream");
    let start_ms = now_secs() * 1000;
    let lines = ["GET /cart 200", "ERROR checkout failed: card declined", "GET /health 200"];
    let mut request = logs.put_log_events().log_group_name("/web/app").log_stream_name("i-01");
    for (offset, line) in (0..).zip(lines) {
        let event = InputLogEvent::builder().timestamp(start_ms + offset).message(line).build();
        request = request.log_events(event.expect("event"));
    }
    request.send().await.expect("PutLogEvents");

    let got = logs
        .get_log_events()
        .log_group_name("/web/app")
        .log_stream_name("i-01")
        .start_from_head(true)
        .send()
        .await
        .expect("GetLogEvents");
    let messages: Vec<_> = got.events().iter().filter_map(|e| e.message()).collect();
    assert_eq!(messages, lines);

    let filtered = logs
        .filter_log_events()
        .log_group_name("/web/app")
        .filter_pattern("ERROR")
        .send()
        .await
        .expect("FilterLogEvents");
    let matches: Vec<_> = filtered.events().iter().filter_map(|e| e.message()).collect();
    assert_eq!(matches, ["ERROR checkout failed: card declined"]);
    assert_eq!(filtered.events()[0].log_stream_name(), Some("i-01"));
}

#[tokio::test]
async fn sns_json_messages_with_attributes_reach_a_subscribed_queue() {
    let (_stack, config) = stack().await;
    let sns = aws_sdk_sns::Client::new(&config);
    let inbox = Inbox::create(&config, "oncall").await.expect("inbox");
    let body = serde_json::json!({
        "default": "HighCpu firing on i-01",
        "sqs": "HighCpu firing on i-01 (queue body)",
        "email": "full text",
        "sms": "HighCpu i-01",
    });
    let attribute = |value: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .expect("attribute")
    };
    sns.publish()
        .topic_arn(&inbox.topic_arn)
        .message_structure("json")
        .message(body.to_string())
        .subject("[FIRING] HighCpu")
        .message_attributes("rule", attribute("HighCpu"))
        .message_attributes("severity", attribute("critical"))
        .message_attributes("status", attribute("firing"))
        .send()
        .await
        .expect("Publish");

    let notifications = inbox.receive().await.expect("receive");
    assert_eq!(notifications.len(), 1);
    let got = &notifications[0];
    assert_eq!(got.message, "HighCpu firing on i-01 (queue body)");
    assert_eq!(got.subject.as_deref(), Some("[FIRING] HighCpu"));
    assert_eq!(got.topic_arn, inbox.topic_arn);
    let attributes: Vec<_> = got
        .message_attributes
        .iter()
        .map(|(name, a)| (name.as_str(), a.data_type.as_str(), a.value.as_str()))
        .collect();
    assert_eq!(
        attributes,
        [
            ("rule", "String", "HighCpu"),
            ("severity", "String", "critical"),
            ("status", "String", "firing")
        ]
    );
    assert!(inbox.receive().await.expect("receive").is_empty(), "delivered once");
}

#[tokio::test]
async fn imds_v2_answers_the_sdk_client_configured_from_the_environment() {
    let (stack, _config) = stack().await;
    let mut probe = Command::new(env!("CARGO_BIN_EXE_klaxon-stack"));
    probe.arg("probe-imds");
    stack.configure(&mut probe);
    let output = probe.output().expect("run klaxon-stack probe-imds");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "i-fake");
    let stats = stack.stats().expect("stats");
    assert_eq!(stats.requests_for("imds./latest/api/token"), 1, "{stats:?}");
    assert_eq!(stats.requests_for("imds./latest/meta-data/instance-id"), 1);
}
