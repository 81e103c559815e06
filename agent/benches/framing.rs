//! Bench: read, frame and batch 150-byte lines to a null sink, on one core.
//!
//! `cargo bench -p klaxon-agent --bench framing` writes a file of 1,000,000 lines,
//! then reads it with the agent's `LineReader` and fills PutLogEvents batches as the
//! shipper does, five times, and prints the median lines per second.

use std::io::Write;
use std::time::{Duration, Instant};

use klaxon_agent::ship::batch::{Batch, OutEvent};
use klaxon_agent::tail::reader::{Framing, LineReader, Position};
use klaxon_agent::tail::timestamp::EventClock;

const LINES: usize = 1_000_000;
const LINE_BYTES: usize = 150;
const RUNS: usize = 5;

fn main() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    let mut text = String::with_capacity(LINES * LINE_BYTES);
    for i in 0..LINES {
        let head = format!(
            "10.0.{}.{} - - [26/Nov/2026:03:00:00 +0000] \"GET /p/{i} HTTP/1.1\" 200 ",
            i % 256,
            i % 97
        );
        text.push_str(&head);
        text.push_str(&"x".repeat(LINE_BYTES - 1 - head.len()));
        text.push('\n');
    }
    file.write_all(text.as_bytes()).expect("write");
    drop(text);

    let mut rates = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let (lines, batches) = read_and_batch(file.as_file());
        let elapsed = started.elapsed();
        assert_eq!(lines, LINES);
        rates.push(LINES as f64 / elapsed.as_secs_f64());
        eprintln!("run: {lines} lines in {} batches, {:?}", batches, elapsed);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "framing: {:.0} lines/s median ({:.0} min, {:.0} max) of {LINE_BYTES}-byte lines, {RUNS} runs",
        rates[RUNS / 2],
        rates[0],
        rates[RUNS - 1]
    );
}

/// One pass over the file: frame every line and fill batches; the batches are dropped.
fn read_and_batch(file: &std::fs::File) -> (usize, usize) {
    let framing = Framing {
        max_event_bytes: 262_144,
        multiline_start: None,
        multiline_timeout: Duration::from_secs(1),
        partial_line_timeout: Duration::from_secs(5),
    };
    let mut reader = LineReader::new(framing, Position::default());
    let mut clock = EventClock::new(None);
    let mut scratch = Vec::new();
    let mut events = Vec::new();
    let mut batch = Batch::default();
    let (mut lines, mut batches) = (0, 0);
    loop {
        events.clear();
        let outcome = reader
            .read(file, &mut scratch, 1 << 20, Instant::now(), &mut clock, &mut events)
            .expect("read");
        for event in events.drain(..) {
            lines += 1;
            let out = OutEvent { timestamp_ms: event.timestamp_ms, message: event.message };
            if let Err(out) = batch.try_add(out) {
                batches += 1;
                std::hint::black_box(std::mem::take(&mut batch).into_events());
                let _ = batch.try_add(out);
            }
        }
        if !outcome.more {
            break;
        }
    }
    (lines, batches + usize::from(!batch.is_empty()))
}
