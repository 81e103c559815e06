//! `klaxon-demo`: the README's first command. It starts the local AWS stack and shows
//! each AWS part Klaxon uses answering: a log line shipped and read back, a metric put
//! and read back, an alert published to SNS and read from the on-call inbox. It stops
//! everything it started and exits non-zero if a step fails.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use klaxon_tests::LocalStack;
use klaxon_tests::inbox::Inbox;

fn step(text: &str) {
    println!("==> {text}");
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    step("starting the local AWS stack (the first run installs moto into a virtualenv)");
    let stack = LocalStack::start().context("starting the local AWS stack")?;
    println!("    endpoint {}", stack.endpoint());
    let config = stack.sdk_config().await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;

    step("shipping a log line to CloudWatch Logs and reading it back");
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    logs.create_log_group().log_group_name("/web/nginx/access").send().await?;
    logs.create_log_stream()
        .log_group_name("/web/nginx/access")
        .log_stream_name("i-demo")
        .send()
        .await?;
    let line = r#"10.0.0.7 - - "GET /checkout HTTP/1.1" 502 157"#;
    let timestamp_ms = i64::try_from(now.as_millis())?;
    logs.put_log_events()
        .log_group_name("/web/nginx/access")
        .log_stream_name("i-demo")
        .log_events(InputLogEvent::builder().timestamp(timestamp_ms).message(line).build()?)
        .send()
        .await?;
    let found = logs
        .filter_log_events()
        .log_group_name("/web/nginx/access")
        .filter_pattern("502")
        .send()
        .await?;
    let messages: Vec<_> = found.events().iter().filter_map(|e| e.message()).collect();
    println!("    {messages:?}");
    ensure!(messages == [line], "the log line did not come back");

    step("putting a CPU sample to CloudWatch metrics and reading it back");
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
    let seconds = i64::try_from(now.as_secs())?;
    let instance = Dimension::builder().name("InstanceId").value("i-demo").build();
    cloudwatch
        .put_metric_data()
        .namespace("Klaxon")
        .metric_data(
            MetricDatum::builder()
                .metric_name("cpu_usage_active")
                .dimensions(instance.clone())
                .values(97.5)
                .timestamp(DateTime::from_secs(seconds))
                .build(),
        )
        .send()
        .await?;
    let metric = Metric::builder()
        .namespace("Klaxon")
        .metric_name("cpu_usage_active")
        .dimensions(instance)
        .build();
    let read = cloudwatch
        .get_metric_data()
        .start_time(DateTime::from_secs(seconds - 300))
        .end_time(DateTime::from_secs(seconds + 60))
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("cpu")
                .metric_stat(
                    MetricStat::builder().metric(metric).period(60).stat("Maximum").build(),
                )
                .build(),
        )
        .send()
        .await?;
    let values: Vec<f64> =
        read.metric_data_results().iter().flat_map(|r| r.values().to_vec()).collect();
    println!("    cpu_usage_active{{InstanceId=i-demo}} max = {values:?}");
    ensure!(values == [97.5], "the metric did not come back");

    step("publishing an alert to SNS and reading it from the on-call inbox (SQS)");
    let inbox = Inbox::create(&config, "oncall-critical").await?;
    let body = serde_json::json!({
        "default": "[FIRING] HighCpu on i-demo: CPU 97.5%",
        "sms": "FIRING HighCpu i-demo 97.5%",
    });
    aws_sdk_sns::Client::new(&config)
        .publish()
        .topic_arn(&inbox.topic_arn)
        .message_structure("json")
        .message(body.to_string())
        .subject("[FIRING] HighCpu on i-demo")
        .send()
        .await?;
    let received = inbox.receive().await?;
    for notification in &received {
        println!("    {:?}: {}", notification.subject, notification.message);
    }
    ensure!(received.len() == 1, "expected one alert in the inbox, got {}", received.len());

    step("done: the stack stops with this process");
    Ok(())
}
