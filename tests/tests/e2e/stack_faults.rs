//! Each injected fault reaches the SDK as AWS would show it: throttles, 500s and resets
//! are retried by the SDK's standard retry; an outage is a dispatch failure, and the same
//! endpoint answers again once it is over.

use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::error::SdkError;
use klaxon_tests::{FaultKind, LocalStack, Service, Times};

use crate::support::stack;

async fn describe_groups(
    logs: &aws_sdk_cloudwatchlogs::Client,
) -> Result<
    (),
    SdkError<aws_sdk_cloudwatchlogs::operation::describe_log_groups::DescribeLogGroupsError>,
> {
    logs.describe_log_groups().send().await.map(drop)
}

fn requests_and_faults(stack: &LocalStack, operation: &str, fault: &str) -> (u64, u64) {
    let stats = stack.stats().expect("stats");
    (stats.requests_for(operation), stats.faults.get(fault).copied().unwrap_or(0))
}

#[tokio::test]
async fn one_fault_of_each_kind_is_retried_by_the_sdk_and_the_call_succeeds() {
    let (stack, config) = stack().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    let cases = [
        (FaultKind::Throttle, "throttle"),
        (FaultKind::ServerError, "error"),
        (FaultKind::Reset, "reset"),
    ];
    for (round, (kind, name)) in (1..).zip(cases) {
        stack.inject(Service::Logs, kind, Times::Next(1)).expect("inject");
        describe_groups(&logs).await.unwrap_or_else(|e| panic!("{name} not retried: {e:?}"));
        let (requests, faults) =
            requests_and_faults(&stack, "logs.DescribeLogGroups", &format!("logs.{name}"));
        assert_eq!((requests, faults), (2 * round, 1), "{name}");
    }
    stack.inject(Service::Metrics, FaultKind::Throttle, Times::Next(1)).expect("inject");
    cloudwatch.list_metrics().send().await.expect("CloudWatch throttle retried");
    assert_eq!(
        requests_and_faults(&stack, "monitoring.ListMetrics", "monitoring.throttle"),
        (2, 1)
    );
    stack.inject(Service::Sns, FaultKind::Throttle, Times::Next(1)).expect("inject");
    sns.list_topics().send().await.expect("SNS throttle retried");
    assert_eq!(requests_and_faults(&stack, "sns.ListTopics", "sns.throttle"), (2, 1));
}

#[tokio::test]
async fn persistent_throttling_surfaces_as_the_service_throttling_error() {
    let (stack, config) = stack().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
    stack.inject(Service::All, FaultKind::Throttle, Times::Fraction(1.0)).expect("inject");

    let error = describe_groups(&logs).await.expect_err("throttled");
    assert_eq!(
        aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata::code(&error),
        Some("ThrottlingException")
    );
    let error = cloudwatch.list_metrics().send().await.expect_err("throttled");
    assert_eq!(aws_sdk_cloudwatch::error::ProvideErrorMetadata::code(&error), Some("Throttling"));
    // The standard retry mode makes three attempts.
    assert_eq!(requests_and_faults(&stack, "logs.DescribeLogGroups", "logs.throttle"), (3, 3));

    stack.clear_faults().expect("clear");
    describe_groups(&logs).await.expect("answers once the faults are cleared");
}

#[tokio::test]
async fn an_outage_is_a_dispatch_failure_and_the_endpoint_recovers() {
    let (stack, config) = stack().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    describe_groups(&logs).await.expect("before the outage");
    stack.set_outage(true).expect("outage");
    let error = describe_groups(&logs).await.expect_err("refused during the outage");
    assert!(matches!(error, SdkError::DispatchFailure(_)), "{error:?}");
    stack.set_outage(false).expect("recovery");
    describe_groups(&logs).await.expect("after the outage");
}

#[tokio::test]
async fn added_latency_delays_every_request() {
    let (stack, config) = stack().await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    stack.set_latency(Service::Logs, Duration::from_millis(700)).expect("latency");
    let started = Instant::now();
    describe_groups(&logs).await.expect("slow but answered");
    assert!(started.elapsed() >= Duration::from_millis(700), "{:?}", started.elapsed());
}
