//! Bench: what the shipped rules cost for a 100-host fleet at a 60 s interval.
//!
//! `cargo bench -p klaxon-tests --bench aggregator_cost` puts a fleet's metrics in the
//! local stack (100 hosts with the agent's default set; an ALB, a primary and two
//! replicas, three Lambda functions, an API and a distribution), runs five evaluation
//! cycles of the shipped rules (one series lookup, as in five minutes), and prints the
//! CloudWatch calls per cycle and the monthly cost at list price.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use klaxon_aggregator::daemon::Evaluator;
use klaxon_aggregator::rules::check::{load_rules, rule_files};
use klaxon_aggregator::source::logs::LogSource;
use klaxon_aggregator::source::metrics::MetricSource;
use klaxon_tests::LocalStack;

/// List prices, us-east-1 (CloudWatch pricing page as read in November 2025): GetMetricData
/// $0.01 per 1,000 metrics requested, ListMetrics $0.01 per 1,000 requests; FilterLogEvents
/// is not billed per request.
const GET_METRIC_DATA_PER_THOUSAND_METRICS: f64 = 0.01;
const LIST_METRICS_PER_THOUSAND: f64 = 0.01;
const CYCLES: u64 = 5;

fn datum(name: &str, dims: &[(&str, &str)], value: f64, at: i64) -> MetricDatum {
    let dims = dims.iter().map(|(k, v)| Dimension::builder().name(*k).value(*v).build());
    MetricDatum::builder()
        .metric_name(name)
        .set_dimensions(Some(dims.collect()))
        .timestamp(DateTime::from_secs(at))
        .values(value)
        .build()
}

async fn put(cloudwatch: &aws_sdk_cloudwatch::Client, namespace: &str, data: Vec<MetricDatum>) {
    for chunk in data.chunks(1000) {
        cloudwatch
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(chunk.to_vec()))
            .send()
            .await
            .expect("put");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let stack = LocalStack::start().expect("stack");
    let config = stack.sdk_config().await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let mut hosts = Vec::new();
    for host in 0..100 {
        let id = format!("i-{host:03}");
        let i = id.as_str();
        hosts.push(datum(
            "cpu_usage_active",
            &[("InstanceId", i), ("cpu", "cpu-total")],
            20.0,
            now,
        ));
        hosts.push(datum("mem_used_percent", &[("InstanceId", i)], 40.0, now));
        hosts.push(datum("swap_used_percent", &[("InstanceId", i)], 0.0, now));
        hosts.push(datum(
            "disk_used_percent",
            &[("InstanceId", i), ("path", "/"), ("device", "nvme0n1p1"), ("fstype", "xfs")],
            30.0,
            now,
        ));
        hosts.push(datum("klaxon_heartbeat", &[("InstanceId", i)], 1.0, now));
    }
    put(&cloudwatch, "Klaxon", hosts).await;
    let lb = [("LoadBalancer", "app/shop/1")];
    let tg = [("TargetGroup", "targetgroup/web/1")];
    put(
        &cloudwatch,
        "AWS/ApplicationELB",
        ["HTTPCode_Target_5XX_Count", "RequestCount", "TargetResponseTime"]
            .iter()
            .map(|m| datum(m, &lb, 1.0, now))
            .chain([datum("UnHealthyHostCount", &tg, 0.0, now)])
            .collect(),
    )
    .await;
    let databases = ["shop-primary", "shop-replica-1", "shop-replica-2"];
    put(
        &cloudwatch,
        "AWS/RDS",
        databases
            .iter()
            .flat_map(|db| {
                ["CPUUtilization", "ReplicaLag", "FreeStorageSpace", "DatabaseConnections"]
                    .map(|m| datum(m, &[("DBInstanceIdentifier", db)], 1.0, now))
            })
            .collect(),
    )
    .await;
    put(
        &cloudwatch,
        "AWS/Lambda",
        ["checkout", "search", "images"]
            .iter()
            .flat_map(|f| {
                ["Errors", "Throttles", "Duration"]
                    .map(|m| datum(m, &[("FunctionName", f)], 1.0, now))
            })
            .collect(),
    )
    .await;
    put(
        &cloudwatch,
        "AWS/ApiGateway",
        ["5XXError", "Latency"]
            .iter()
            .map(|m| datum(m, &[("ApiName", "shop-api")], 1.0, now))
            .collect(),
    )
    .await;
    put(
        &cloudwatch,
        "AWS/CloudFront",
        vec![datum("5xxErrorRate", &[("DistributionId", "E1"), ("Region", "Global")], 0.1, now)],
    )
    .await;
    for group in ["/web/nginx/access", "/web/app"] {
        logs.create_log_group().log_group_name(group).send().await.expect("group");
    }

    let rules_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
    let files = rule_files(&[rules_dir.into()]).expect("rule files");
    let rules = load_rules(&files).expect("rules");
    let state = tempfile::tempdir().expect("state");
    let metrics =
        MetricSource::new(aws_sdk_cloudwatch::Client::new(&config), Duration::from_secs(300));
    let log_source = LogSource::new(aws_sdk_cloudwatchlogs::Client::new(&config), 2);
    let mut evaluator = Evaluator::new(metrics, log_source, state.path()).expect("evaluator");
    let before = stack.stats().expect("stats");
    for cycle in 0..CYCLES {
        evaluator.cycle(&rules, now + 60 * cycle as i64).await;
    }
    let after = stack.stats().expect("stats");
    let per_cycle =
        |op: &str| (after.requests_for(op) - before.requests_for(op)) as f64 / CYCLES as f64;
    let list = per_cycle("monitoring.ListMetrics");
    let get = per_cycle("monitoring.GetMetricData");
    let filter = per_cycle("logs.FilterLogEvents");
    let requested = evaluator.metrics_requested() as f64 / CYCLES as f64;
    let cycles_a_month = 30.0 * 24.0 * 60.0;
    let dollars = cycles_a_month
        * (requested / 1000.0 * GET_METRIC_DATA_PER_THOUSAND_METRICS
            + list / 1000.0 * LIST_METRICS_PER_THOUSAND);
    println!(
        "aggregator cost: {} shipped rules, 100 hosts, 60 s interval: per cycle {get:.1} GetMetricData calls ({requested:.0} metrics requested), {list:.1} ListMetrics, {filter:.1} FilterLogEvents; ${dollars:.2}/month",
        rules.len()
    );
}
