//! `klaxon logs query`: every page of FilterLogEvents for a group (or one stream) and a
//! time range, handed on event by event, so millions of events take constant memory.

use std::io::Write;

use aws_sdk_cloudwatchlogs::Client;
use serde::Serialize;

use super::time::format_ms;
use crate::rules::pattern::check_filter_pattern;
use crate::source::SourceError;
use klaxon_common::manifest_record::MANIFEST_SUFFIX;

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub group: String,
    pub stream: Option<String>,
    /// Milliseconds since the epoch, inclusive.
    pub start_ms: Option<i64>,
    /// Milliseconds since the epoch, exclusive.
    pub end_ms: Option<i64>,
    pub filter: Option<String>,
    pub limit: Option<u64>,
}

/// One event as CloudWatch Logs returned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub stream: String,
    pub timestamp: i64,
    pub ingestion_time: i64,
    pub message: String,
}

/// Why a query failed, in the auditor's words.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("log group {0:?} does not exist")]
    NoGroup(String),
    #[error("invalid filter pattern {pattern:?}: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("{0}")]
    Aws(SourceError),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Reads every page in time order and hands each event to `each`; returns the count.
pub async fn run_query(
    client: &Client,
    query: &Query,
    mut each: impl FnMut(Event) -> std::io::Result<()>,
) -> Result<u64, QueryError> {
    if let Some(pattern) = &query.filter {
        check_filter_pattern(pattern).map_err(|reason| QueryError::BadPattern {
            pattern: pattern.clone(),
            reason: reason.0,
        })?;
    }
    let mut token: Option<String> = None;
    let mut count = 0u64;
    loop {
        let page = client
            .filter_log_events()
            .log_group_name(&query.group)
            .set_log_stream_names(query.stream.clone().map(|s| vec![s]))
            .set_start_time(query.start_ms)
            .set_end_time(query.end_ms.map(|end| end - 1))
            .set_filter_pattern(query.filter.clone())
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|error| {
                let error = SourceError::from_sdk("FilterLogEvents", &error);
                match error.code.as_str() {
                    "ResourceNotFoundException" => QueryError::NoGroup(query.group.clone()),
                    "InvalidParameterException" if query.filter.is_some() => {
                        QueryError::BadPattern {
                            pattern: query.filter.clone().unwrap_or_default(),
                            reason: error.message,
                        }
                    }
                    _ => QueryError::Aws(error),
                }
            })?;
        for event in page.events() {
            let stream = event.log_stream_name().unwrap_or_default();
            // A group's manifests are read with `logs verify`, or named with --stream.
            if query.stream.is_none() && stream.ends_with(MANIFEST_SUFFIX) {
                continue;
            }
            if query.limit.is_some_and(|limit| count >= limit) {
                return Ok(count);
            }
            each(Event {
                stream: stream.to_owned(),
                timestamp: event.timestamp().unwrap_or_default(),
                ingestion_time: event.ingestion_time().unwrap_or_default(),
                message: event.message().unwrap_or_default().to_owned(),
            })?;
            count += 1;
        }
        let next = page.next_token().map(str::to_owned);
        // A token that does not move would loop forever.
        if next.is_none() || next == token {
            return Ok(count);
        }
        token = next;
    }
}

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    /// `TIMESTAMP  INGESTED  STREAM  MESSAGE`, one line each.
    Text,
    /// One JSON object a line.
    Jsonl,
    /// RFC 4180 with a header row.
    Csv,
}

/// Prints events as they come.
pub enum EventWriter<W: Write> {
    Text(W),
    Jsonl(W),
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> EventWriter<W> {
    /// A writer in `format`; CSV starts with its header row.
    pub fn new(format: EventFormat, out: W) -> std::io::Result<Self> {
        Ok(match format {
            EventFormat::Text => EventWriter::Text(out),
            EventFormat::Jsonl => EventWriter::Jsonl(out),
            EventFormat::Csv => {
                let mut csv = csv::Writer::from_writer(out);
                csv.write_record(["timestamp", "ingestion_time", "stream", "message"])?;
                EventWriter::Csv(Box::new(csv))
            }
        })
    }

    pub fn write(&mut self, event: &Event) -> std::io::Result<()> {
        let timestamp = format_ms(event.timestamp);
        let ingested = format_ms(event.ingestion_time);
        match self {
            EventWriter::Text(out) => writeln!(
                out,
                "{timestamp}  {ingested}  {}  {}",
                event.stream,
                event.message.trim_end_matches('\n')
            ),
            EventWriter::Jsonl(out) => {
                let row = serde_json::json!({
                    "timestamp": timestamp,
                    "ingestion_time": ingested,
                    "stream": event.stream,
                    "message": event.message,
                });
                writeln!(out, "{row}")
            }
            EventWriter::Csv(csv) => {
                Ok(csv.write_record([&timestamp, &ingested, &event.stream, &event.message])?)
            }
        }
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        match self {
            EventWriter::Text(out) | EventWriter::Jsonl(out) => out.flush(),
            EventWriter::Csv(csv) => csv.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_text_keeps_one_line_per_event() {
        let event = Event {
            stream: "i-1".to_owned(),
            timestamp: 1_800_000_000_000,
            ingestion_time: 1_800_000_000_250,
            message: "GET /a,b \"q\"".to_owned(),
        };
        let mut csv = EventWriter::new(EventFormat::Csv, Vec::new()).expect("csv");
        csv.write(&event).expect("write");
        csv.flush().expect("flush");
        let EventWriter::Csv(csv) = csv else { unreachable!() };
        let text = String::from_utf8((*csv).into_inner().expect("inner")).expect("utf-8");
        assert_eq!(
            text,
            "timestamp,ingestion_time,stream,message\n2027-01-15T08:00:00.000Z,2027-01-15T08:00:00.250Z,i-1,\"GET /a,b \"\"q\"\"\"\n"
        );
        let mut plain = EventWriter::new(EventFormat::Text, Vec::new()).expect("text");
        plain.write(&event).expect("write");
        let EventWriter::Text(bytes) = plain else { unreachable!() };
        assert_eq!(
            String::from_utf8(bytes).expect("utf-8"),
            "2027-01-15T08:00:00.000Z  2027-01-15T08:00:00.250Z  i-1  GET /a,b \"q\"\n"
        );
    }
}
