//! `klaxon logs query` and `klaxon logs verify`: the auditors' side of the CLI.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use klaxon_aggregator::audit::query::{EventFormat, EventWriter, Query, run_query};
use klaxon_aggregator::audit::time::{format_ms, parse_time};
use klaxon_aggregator::audit::verify::{Finding, ReadEvent, StreamReport, Verdict, Verifier};
use klaxon_aggregator::source::SourceError;
use klaxon_common::manifest_record::{MANIFEST_SUFFIX, ManifestRecord};

use crate::cli::{Format, LogRange};

/// A spinner on stderr counting events while a command reads them, when stderr is a
/// terminal (never in piped output); cleared when dropped.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(what: &str) -> Progress {
        use std::io::IsTerminal;
        Progress(std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message(what.to_owned());
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        }))
    }

    fn tick(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// The range's times in milliseconds; `--start`/`--end` name themselves in errors.
fn times(range: &LogRange) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let parse = |flag: &str, text: &Option<String>| {
        text.as_deref()
            .map(|text| parse_time(text, now).map_err(|error| anyhow::anyhow!("{flag}: {error}")))
            .transpose()
    };
    Ok((parse("--start", &range.start)?, parse("--end", &range.end)?))
}

async fn logs_client() -> aws_sdk_cloudwatchlogs::Client {
    let aws = klaxon_common::aws::load_sdk_config(klaxon_common::aws::Retries::Sdk).await;
    aws_sdk_cloudwatchlogs::Client::new(&aws)
}

/// `klaxon logs query`: prints events as the pages come; exit 1 on any failure.
pub fn query(
    range: &LogRange,
    filter: Option<String>,
    limit: Option<u64>,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let (start_ms, end_ms) = times(range)?;
    let query = Query {
        group: range.group.clone(),
        stream: range.stream.clone(),
        start_ms,
        end_ms,
        filter,
        limit,
    };
    let format = match format {
        Format::Text => EventFormat::Text,
        Format::Json | Format::Jsonl => EventFormat::Jsonl,
        Format::Csv => EventFormat::Csv,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = logs_client().await;
        let mut writer =
            EventWriter::new(format, std::io::BufWriter::new(std::io::stdout().lock()))?;
        let progress = Progress::new("events");
        run_query(&client, &query, |event| {
            progress.tick();
            writer.write(&event)
        })
        .await?;
        drop(progress);
        writer.flush()?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Every manifest record of `stream`, in the manifest stream's order; events that are
/// not records are findings of their own.
async fn read_records(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
) -> anyhow::Result<(Vec<ManifestRecord>, Vec<Finding>)> {
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    let manifest = format!("{stream}{MANIFEST_SUFFIX}");
    read_stream(client, group, &manifest, None, None, |event| {
        match serde_json::from_str::<ManifestRecord>(&event.message) {
            Ok(record) => records.push(record),
            Err(error) => unreadable.push(Finding {
                seq: None,
                first_ts: event.timestamp,
                last_ts: event.timestamp,
                events: 0,
                files: Vec::new(),
                detail: format!("an event of {manifest} is not a manifest record: {error}"),
            }),
        }
    })
    .await?;
    Ok((records, unreadable))
}

/// Every event of one stream in `[start, end)`, in the stream's order (GetLogEvents
/// from the head, all pages).
async fn read_stream(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
    start: Option<i64>,
    end: Option<i64>,
    mut each: impl FnMut(ReadEvent),
) -> anyhow::Result<()> {
    let mut token: Option<String> = None;
    loop {
        let page = client
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_start_time(start)
            .set_end_time(end)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|error| {
                let missing = || format!("log stream {stream:?} of group {group:?} does not exist");
                explain(SourceError::from_sdk("GetLogEvents", &error), missing)
            })?;
        for event in page.events() {
            each(ReadEvent {
                timestamp: event.timestamp().unwrap_or_default(),
                ingestion_time: event.ingestion_time().unwrap_or_default(),
                message: event.message().unwrap_or_default().to_owned(),
            });
        }
        let next = page.next_forward_token().map(str::to_owned);
        if page.events().is_empty() || next.is_none() || next == token {
            return Ok(());
        }
        token = next;
    }
}

/// A CloudWatch Logs error in the auditor's words: `missing` for a group or stream that
/// does not exist.
fn explain(error: SourceError, missing: impl FnOnce() -> String) -> anyhow::Error {
    if error.code == "ResourceNotFoundException" {
        anyhow::anyhow!(missing())
    } else {
        anyhow::anyhow!("{error}")
    }
}

/// The streams of `group` that have a manifest.
async fn manifested_streams(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
) -> anyhow::Result<Vec<String>> {
    let mut streams = Vec::new();
    let mut pages = client.describe_log_streams().log_group_name(group).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|error| {
            let missing = || format!("log group {group:?} does not exist");
            explain(SourceError::from_sdk("DescribeLogStreams", &error), missing)
        })?;
        for stream in page.log_streams() {
            if let Some(name) =
                stream.log_stream_name().and_then(|n| n.strip_suffix(MANIFEST_SUFFIX))
            {
                streams.push(name.to_owned());
            }
        }
    }
    Ok(streams)
}

/// `klaxon logs verify`: each stream's events against its manifest; exit 0 when
/// everything verifies, 3 when all is there but gaps the agent declared, 1 when
/// anything was lost or altered without a declaration.
pub fn verify(range: &LogRange, format: Format) -> anyhow::Result<ExitCode> {
    let (start, end) = times(range)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = logs_client().await;
        let streams = match &range.stream {
            Some(stream) => vec![stream.clone()],
            None => manifested_streams(&client, &range.group).await?,
        };
        anyhow::ensure!(!streams.is_empty(), "no stream of {:?} has a manifest", range.group);
        let mut worst = Verdict::Complete;
        let mut out = std::io::stdout().lock();
        for stream in streams {
            let (records, unreadable) = read_records(&client, &range.group, &stream).await?;
            // Read the whole span of every record that reaches into the range.
            let overlapping = records.iter().filter(|r| {
                start.is_none_or(|s| r.last_ts >= s) && end.is_none_or(|e| r.first_ts < e)
            });
            let (mut from, mut to) = (start, end);
            for record in overlapping {
                from = from.map(|f| f.min(record.first_ts));
                to = to.map(|t| t.max(record.last_ts + 1));
            }
            let mut verifier = Verifier::new(&stream, records);
            for finding in unreadable {
                verifier.unreadable(finding);
            }
            let progress = Progress::new(&format!("events of {stream} checked"));
            read_stream(&client, &range.group, &stream, from, to, |event| {
                progress.tick();
                verifier.push(event);
            })
            .await?;
            drop(progress);
            let report = verifier.finish(start, end);
            worst = worst.max(report.verdict());
            match format {
                Format::Json | Format::Jsonl => {
                    writeln!(out, "{}", serde_json::to_string(&report)?)?
                }
                Format::Text | Format::Csv => write!(out, "{}", render_report(&report))?,
            }
        }
        Ok(match worst {
            Verdict::Complete => ExitCode::SUCCESS,
            Verdict::CompleteExceptDeclaredGaps => ExitCode::from(3),
            Verdict::LostOrAltered => ExitCode::FAILURE,
        })
    })
}

/// The report for a person.
fn render_report(report: &StreamReport) -> String {
    use std::fmt::Write as _;
    let verdict = match report.verdict() {
        Verdict::Complete => "verified",
        Verdict::CompleteExceptDeclaredGaps => "verified except declared gaps",
        Verdict::LostOrAltered => "FAILED",
    };
    let mut text = format!(
        "{}: {verdict} ({} events read, {} manifest records)\n",
        report.stream, report.events_read, report.records
    );
    for run in &report.verified {
        let _ = writeln!(
            text,
            "  verified   records {}..={}: {} events, {} .. {}",
            run.first_seq,
            run.last_seq,
            run.events,
            format_ms(run.first_ts),
            format_ms(run.last_ts)
        );
    }
    let sections = [
        ("chain", &report.chain),
        ("lost", &report.lost),
        ("missing", &report.missing),
        ("altered", &report.altered),
        ("extra", &report.extra),
        ("duplicate", &report.duplicates),
        ("gap", &report.gaps),
        ("unshipped", &report.not_yet_shipped),
    ];
    for (label, findings) in sections {
        for finding in findings {
            let _ = writeln!(
                text,
                "  {label:<10} {} .. {}: {}",
                format_ms(finding.first_ts),
                format_ms(finding.last_ts),
                finding.detail
            );
        }
    }
    text
}
