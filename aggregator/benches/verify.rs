//! Bench: `klaxon logs verify`'s local work, without CloudWatch: 1,000,000 events in
//! 1,000 batches of 1,000 (150-byte lines), their hash-chained manifest, plus one batch
//! sent twice, pushed through the verifier in stream order.
//!
//! `cargo bench -p klaxon-aggregator --bench verify` prints events/s (median of 3).

use std::time::Instant;

use klaxon_aggregator::audit::verify::{ReadEvent, Verifier};
use klaxon_common::manifest_record::{
    CHAIN_START, EventsDigest, FORMAT_VERSION, FileRange, ManifestRecord,
};

const BATCHES: usize = 1000;
const PER_BATCH: usize = 1000;

fn shipped() -> (Vec<ManifestRecord>, Vec<ReadEvent>) {
    let mut records: Vec<ManifestRecord> = Vec::with_capacity(BATCHES);
    let mut events = Vec::with_capacity(BATCHES * PER_BATCH + PER_BATCH);
    for batch in 0..BATCHES {
        let mut digest = EventsDigest::default();
        let first = (batch * PER_BATCH) as i64;
        for i in 0..PER_BATCH {
            let ts = first + i as i64;
            let head = format!("10.0.0.{} - - \"GET /checkout/{ts} HTTP/1.1\" 200 ", i % 250);
            let message = format!("{head}{}", "x".repeat(150 - head.len()));
            digest.add(ts, &message);
            events.push(ReadEvent { timestamp: ts, ingestion_time: batch as i64 * 10, message });
        }
        let prev = records.last().map_or_else(|| format!("{CHAIN_START}bench"), |r| r.hash.clone());
        let files = vec![FileRange {
            path: "/var/log/nginx/access.log".into(),
            dev: 1,
            inode: 2,
            fingerprint: "256:00".into(),
            from: Some(batch as u64 * 151_000),
            to: (batch as u64 + 1) * 151_000,
            size: None,
        }];
        let record = ManifestRecord {
            klaxon_manifest: FORMAT_VERSION,
            seq: batch as u64,
            prev,
            files,
            gaps: Vec::new(),
            events: PER_BATCH as u64,
            rejected: 0,
            first_ts: first,
            last_ts: first + PER_BATCH as i64 - 1,
            sha256: digest.finish(),
            hash: String::new(),
        };
        records.push(record.seal());
    }
    // The batch in flight at a kill, ingested twice.
    let again: Vec<ReadEvent> = events[500 * PER_BATCH..501 * PER_BATCH]
        .iter()
        .map(|e| ReadEvent { ingestion_time: 5001, ..e.clone() })
        .collect();
    events.extend(again);
    events.sort_by_key(|e| (e.timestamp, e.ingestion_time));
    (records, events)
}

fn main() {
    let (records, events) = shipped();
    let mut rates = Vec::new();
    for _ in 0..3 {
        let (records, events) = (records.clone(), events.clone());
        let count = events.len();
        let started = Instant::now();
        let mut verifier = Verifier::new("bench", records);
        for event in events {
            verifier.push(event);
        }
        let report = verifier.finish(None, None);
        let elapsed = started.elapsed();
        assert!(report.passed() && report.duplicates.len() == 1, "{report:?}");
        rates.push(count as f64 / elapsed.as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "verify: {} events ({} batches, 1 duplicated) at {:.0} events/s (median of 3)",
        BATCHES * PER_BATCH + PER_BATCH,
        BATCHES,
        rates[1]
    );
}
