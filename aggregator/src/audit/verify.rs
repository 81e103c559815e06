//! `klaxon logs verify`: a stream's events checked against its manifest.
//!
//! Each PutLogEvents call gets one ingestion time, so the events of one ingestion time
//! are one batch the agent sent. A batch is matched to the manifest record whose first
//! event time it shares (or whose span holds it), by count and digest. Events are read
//! in time order and a batch is judged once the stream has moved past its record's
//! span: memory holds the batches in flight over that span, not the stream.
//!
//! What does not match is classified: a record without its batch (missing events), a
//! batch of the right size with another digest (altered), a batch of another size
//! (events missing from it or added to it), a batch no record covers (extra), unless
//! every event of it is found again in verified batches (a duplicate that at-least-once
//! delivery explains, such as the batch in flight when the agent was killed).
//!
//! The records also say which bytes of each file were shipped and which the agent
//! declared lost ([`klaxon_common::coverage`]): bytes that are neither are loss, named by
//! file, identity and byte range. The [`Verdict`] tells complete, complete except
//! declared gaps, and lost or altered apart.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use serde::Serialize;
use sha2::{Digest, Sha256};

use klaxon_common::coverage::coverage;
use klaxon_common::manifest_record::{CHAIN_START, EventsDigest, FileRange, ManifestRecord};

/// One event as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEvent {
    pub timestamp: i64,
    pub ingestion_time: i64,
    pub message: String,
}

/// One finding, with where it is: the record (and its byte ranges) or the times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub seq: Option<u64>,
    pub first_ts: i64,
    pub last_ts: i64,
    pub events: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileRange>,
    pub detail: String,
}

impl Finding {
    /// A finding located at `record`: its sequence number, times and byte ranges.
    fn about(record: &ManifestRecord, detail: String) -> Finding {
        Finding {
            seq: Some(record.seq),
            first_ts: record.first_ts,
            last_ts: record.last_ts,
            events: record.events,
            files: record.files.clone(),
            detail,
        }
    }
}

/// A run of consecutive verified records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedRange {
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_ts: i64,
    pub last_ts: i64,
    pub events: u64,
}

/// Everything found about one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    pub stream: String,
    pub records: u64,
    pub events_read: u64,
    pub verified: Vec<VerifiedRange>,
    pub missing: Vec<Finding>,
    pub altered: Vec<Finding>,
    pub extra: Vec<Finding>,
    pub duplicates: Vec<Finding>,
    /// Problems of the manifest itself: a broken chain, an altered record.
    pub chain: Vec<Finding>,
    /// Bytes of a file that the manifest shows neither shipped nor declared lost.
    pub lost: Vec<Finding>,
    /// What the agent itself declared not shipped: bytes it could not read, events
    /// CloudWatch Logs rejected.
    pub gaps: Vec<Finding>,
    /// Bytes the agent had seen and not yet shipped as of its last record (informative:
    /// a later record may ship them).
    pub not_yet_shipped: Vec<Finding>,
}

/// What an auditor concludes of a stream: `klaxon logs verify`'s exit statuses 0, 3, 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Complete,
    CompleteExceptDeclaredGaps,
    LostOrAltered,
}

impl StreamReport {
    /// Nothing lost or altered without a declaration.
    pub fn passed(&self) -> bool {
        self.missing.is_empty()
            && self.altered.is_empty()
            && self.extra.is_empty()
            && self.chain.is_empty()
            && self.lost.is_empty()
    }

    pub fn verdict(&self) -> Verdict {
        match (self.passed(), self.gaps.is_empty()) {
            (false, _) => Verdict::LostOrAltered,
            (true, false) => Verdict::CompleteExceptDeclaredGaps,
            (true, true) => Verdict::Complete,
        }
    }
}

/// Checks the chain of `records` (in the order the manifest stream holds them) and
/// returns the records to match, duplicates of a record (a resent manifest batch) once.
pub fn check_chain(records: Vec<ManifestRecord>, report: &mut StreamReport) -> Vec<ManifestRecord> {
    let mut kept: Vec<ManifestRecord> = Vec::with_capacity(records.len());
    let mut seen: HashMap<String, ()> = HashMap::new();
    for record in records {
        if seen.insert(record.hash.clone(), ()).is_some() {
            continue;
        }
        let finding = |detail: String| Finding::about(&record, detail);
        if record.compute_hash() != record.hash {
            report
                .chain
                .push(finding("the manifest record was altered (its hash does not match)".into()));
        }
        match kept.last() {
            _ if record.prev.starts_with(CHAIN_START) => {
                if record.seq != 0 {
                    report.chain.push(finding(format!("a chain start with seq {}", record.seq)));
                }
            }
            Some(previous) if previous.hash == record.prev && previous.seq + 1 == record.seq => {}
            Some(previous) => report.chain.push(finding(format!(
                "broken chain: record {} does not follow record {} (records {}..{} are missing or out of order)",
                record.seq,
                previous.seq,
                previous.seq + 1,
                record.seq.saturating_sub(1)
            ))),
            None => report.chain.push(finding(format!(
                "the manifest starts at record {} without its chain's start",
                record.seq
            ))),
        }
        if record.rejected > 0 {
            report.gaps.push(finding(format!(
                "{} events of this batch were rejected by CloudWatch Logs (the agent logged a gap marker)",
                record.rejected
            )));
        }
        kept.push(record);
    }
    report.records = kept.len() as u64;
    kept
}

/// The events of one ingestion time, as read so far.
#[derive(Debug)]
struct Batch {
    first_ts: i64,
    last_ts: i64,
    events: Vec<(i64, String)>,
    /// Judge it once the stream is past this time.
    close_after: i64,
}

/// A short hash of a message, to recognize it again without keeping it.
fn message_key(message: &str) -> u64 {
    let digest = Sha256::digest(message.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
}

/// Matches events to records as the events come, in time order.
pub struct Verifier {
    records: Vec<ManifestRecord>,
    /// Record indexes by their first event time.
    by_first_ts: HashMap<i64, Vec<usize>>,
    matched: Vec<bool>,
    /// How long any record's span is: the longest a batch stays open.
    slack: i64,
    open: BTreeMap<i64, Batch>,
    /// Messages of unexplained batches, to be found again in verified ones.
    unexplained: Vec<(Finding, HashMap<u64, u32>)>,
    /// Messages verified recently (within `slack`), for the same purpose.
    recent: Vec<(i64, u64)>,
    report: StreamReport,
}

impl Verifier {
    pub fn new(stream: &str, records: Vec<ManifestRecord>) -> Verifier {
        let mut report = StreamReport { stream: stream.to_owned(), ..StreamReport::default() };
        let records = check_chain(records, &mut report);
        let mut by_first_ts: HashMap<i64, Vec<usize>> = HashMap::new();
        for (index, record) in records.iter().enumerate() {
            by_first_ts.entry(record.first_ts).or_default().push(index);
        }
        let slack = records.iter().map(|r| r.last_ts - r.first_ts).max().unwrap_or(0).max(1000);
        Verifier {
            matched: vec![false; records.len()],
            records,
            by_first_ts,
            slack,
            open: BTreeMap::new(),
            unexplained: Vec::new(),
            recent: Vec::new(),
            report,
        }
    }

    /// A manifest event that is not a record.
    pub fn unreadable(&mut self, finding: Finding) {
        self.report.chain.push(finding);
    }

    /// Takes the next event (in time order).
    pub fn push(&mut self, event: ReadEvent) {
        self.report.events_read += 1;
        self.close_until(event.timestamp);
        let candidates = self.by_first_ts.get(&event.timestamp);
        let slack = self.slack;
        let records = &self.records;
        let batch = self.open.entry(event.ingestion_time).or_insert_with(|| {
            let close_after = candidates
                .and_then(|c| c.iter().map(|&i| records[i].last_ts).max())
                .unwrap_or(event.timestamp + slack);
            Batch {
                first_ts: event.timestamp,
                last_ts: event.timestamp,
                events: Vec::new(),
                close_after,
            }
        });
        batch.last_ts = event.timestamp;
        batch.close_after = batch.close_after.max(event.timestamp);
        batch.events.push((event.timestamp, event.message));
    }

    /// Judges every batch the stream has moved past.
    fn close_until(&mut self, now_ts: i64) {
        let due: Vec<i64> = self
            .open
            .iter()
            .filter(|(_, batch)| batch.close_after < now_ts)
            .map(|(ingestion, _)| *ingestion)
            .collect();
        // Batches that are exactly a record go first, so a forged batch sharing a
        // record's first time cannot take the record from the real one.
        let mut closing: Vec<(Batch, u64, String)> = due
            .into_iter()
            .filter_map(|ingestion| self.open.remove(&ingestion))
            .map(|batch| {
                let mut digest = EventsDigest::default();
                for (ts, message) in &batch.events {
                    digest.add(*ts, message);
                }
                (batch, digest.count(), digest.finish())
            })
            .collect();
        closing.sort_by_key(|(batch, count, digest)| {
            self.exact_record(batch, *count, digest).is_none()
        });
        if closing.is_empty() {
            return;
        }
        for (batch, count, digest) in closing {
            self.judge(batch, count, &digest);
        }
        // Only judging adds to `recent`, so only then is it pruned.
        let horizon = now_ts - 2 * self.slack;
        self.recent.retain(|(ts, _)| *ts >= horizon);
    }

    /// The record `batch` is exactly: same first time, count and digest.
    fn exact_record(&self, batch: &Batch, count: u64, digest: &str) -> Option<usize> {
        self.by_first_ts
            .get(&batch.first_ts)?
            .iter()
            .copied()
            .find(|&i| self.records[i].sha256 == digest && self.records[i].events == count)
    }

    fn judge(&mut self, batch: Batch, count: u64, digest: &str) {
        let exact: Vec<usize> = self.by_first_ts.get(&batch.first_ts).cloned().unwrap_or_default();
        if let Some(index) = self.exact_record(&batch, count, digest) {
            if self.matched[index] {
                let finding = self.finding_for(
                    index,
                    format!("{count} events sent twice (at-least-once delivery)"),
                );
                self.report.duplicates.push(finding);
            } else {
                self.matched[index] = true;
                self.remember_verified(&batch);
            }
            return;
        }
        let unmatched = |i: &usize| !self.matched[*i];
        let candidate = exact.iter().copied().find(unmatched).or_else(|| {
            (0..self.records.len()).find(|&i| {
                !self.matched[i]
                    && self.records[i].first_ts <= batch.first_ts
                    && batch.last_ts <= self.records[i].last_ts
            })
        });
        match candidate {
            Some(index) => {
                self.matched[index] = true;
                let expected = self.records[index].events;
                let place = self.describe(index);
                if count == expected {
                    let detail = format!(
                        "{count} events whose text or time differ from what was shipped ({place})"
                    );
                    let finding = self.finding_for(index, detail);
                    self.report.altered.push(finding);
                } else if count < expected {
                    let detail =
                        format!("{} of {expected} events missing ({place})", expected - count);
                    let finding = self.finding_for(index, detail);
                    self.report.missing.push(finding);
                } else {
                    let detail = format!(
                        "{} events more than the {expected} shipped ({place})",
                        count - expected
                    );
                    let finding = self.finding_for(index, detail);
                    self.report.extra.push(finding);
                }
            }
            None => {
                let mut keys: HashMap<u64, u32> = HashMap::new();
                for (_, message) in &batch.events {
                    *keys.entry(message_key(message)).or_default() += 1;
                }
                for (_, key) in &self.recent {
                    if let Some(left) = keys.get_mut(key) {
                        *left = left.saturating_sub(1);
                    }
                }
                keys.retain(|_, left| *left > 0);
                let first = batch.events.first().map(|(_, m)| m.as_str()).unwrap_or_default();
                let finding = Finding {
                    seq: None,
                    first_ts: batch.first_ts,
                    last_ts: batch.last_ts,
                    events: count,
                    files: Vec::new(),
                    detail: format!(
                        "{count} events no manifest record covers, the first: {:?}",
                        excerpt(first)
                    ),
                };
                self.unexplained.push((finding, keys));
            }
        }
    }

    /// Notes a verified batch's messages, and finds them in unexplained batches.
    fn remember_verified(&mut self, batch: &Batch) {
        for (ts, message) in &batch.events {
            let key = message_key(message);
            self.recent.push((*ts, key));
            for (_, keys) in &mut self.unexplained {
                if let Some(left) = keys.get_mut(&key)
                    && *left > 0
                {
                    *left -= 1;
                    break;
                }
            }
        }
    }

    fn describe(&self, index: usize) -> String {
        let record = &self.records[index];
        let files: Vec<String> = record
            .files
            .iter()
            .map(|f| match f.from {
                Some(from) => format!("bytes {from}..{} of {}", f.to, f.path),
                None => format!("up to byte {} of {}", f.to, f.path),
            })
            .collect();
        if files.is_empty() {
            format!("record {}", record.seq)
        } else {
            format!("record {}: {}", record.seq, files.join(", "))
        }
    }

    fn finding_for(&self, index: usize, detail: String) -> Finding {
        Finding::about(&self.records[index], detail)
    }

    /// Judges what is left once the stream has been read; records in `[start, end)`
    /// without their batch are missing.
    pub fn finish(mut self, start: Option<i64>, end: Option<i64>) -> StreamReport {
        self.close_until(i64::MAX);
        for (index, record) in self.records.iter().enumerate() {
            let in_range = start.is_none_or(|s| record.first_ts >= s)
                && end.is_none_or(|e| record.last_ts < e);
            if self.matched[index] || !in_range || record.events == 0 {
                continue;
            }
            let detail = format!("all {} events missing ({})", record.events, self.describe(index));
            let finding = self.finding_for(index, detail);
            self.report.missing.push(finding);
        }
        for (finding, left) in std::mem::take(&mut self.unexplained) {
            if left.values().all(|&count| count == 0) {
                let detail = format!(
                    "{} events sent again after a restart or a lost acknowledgement (at-least-once delivery)",
                    finding.events
                );
                self.report.duplicates.push(Finding { detail, ..finding });
            } else {
                self.report.extra.push(finding);
            }
        }
        let mut verified: Vec<VerifiedRange> = Vec::new();
        for (record, _) in self.records.iter().zip(&self.matched).filter(|(_, m)| **m) {
            let is_alteration = |f: &Finding| f.seq == Some(record.seq);
            if self
                .report
                .altered
                .iter()
                .chain(&self.report.missing)
                .chain(&self.report.extra)
                .any(is_alteration)
            {
                continue;
            }
            match verified.last_mut() {
                Some(run) if run.last_seq + 1 == record.seq => {
                    run.last_seq = record.seq;
                    run.last_ts = run.last_ts.max(record.last_ts);
                    run.events += record.events;
                }
                _ => verified.push(VerifiedRange {
                    first_seq: record.seq,
                    last_seq: record.seq,
                    first_ts: record.first_ts,
                    last_ts: record.last_ts,
                    events: record.events,
                }),
            }
        }
        self.report.verified = verified;
        self.judge_files();
        self.report
    }

    /// Each file's bytes as the records tell them: holes are loss, declared gaps listed.
    fn judge_files(&mut self) {
        let by_seq: HashMap<u64, &ManifestRecord> =
            self.records.iter().map(|record| (record.seq, record)).collect();
        for file in coverage(&self.records) {
            let identity = format!(
                "{} (device {}, inode {}, first bytes {})",
                file.path, file.dev, file.inode, file.fingerprint
            );
            let located = |bytes: &Range<u64>, seq: Option<u64>, detail: String| {
                let record = seq.and_then(|seq| by_seq.get(&seq));
                Finding {
                    seq,
                    first_ts: record.map_or(0, |r| r.first_ts),
                    last_ts: record.map_or(0, |r| r.last_ts),
                    events: 0,
                    files: vec![FileRange {
                        path: file.path.clone(),
                        dev: file.dev,
                        inode: file.inode,
                        fingerprint: file.fingerprint.clone(),
                        from: Some(bytes.start),
                        to: bytes.end,
                        size: None,
                    }],
                    detail,
                }
            };
            for lost in &file.lost {
                let (from, to) = (lost.bytes.start, lost.bytes.end);
                let between = match (lost.after_seq, lost.before_seq) {
                    (Some(after), Some(before)) => format!("between records {after} and {before}"),
                    (Some(after), None) => {
                        format!("after record {after}, before the file started again at 0")
                    }
                    _ => "before the first record".to_owned(),
                };
                let detail = format!(
                    "bytes {from}..{to} of {identity} were neither shipped nor declared lost ({between})"
                );
                let finding = located(&lost.bytes, lost.before_seq.or(lost.after_seq), detail);
                self.report.lost.push(finding);
            }
            for gap in &file.declared {
                let end = gap.to.map_or_else(|| "its end".to_owned(), |to| to.to_string());
                let bytes = gap.from..gap.to.unwrap_or(gap.from);
                let seq = self.records.iter().find(|r| r.gaps.contains(gap)).map(|r| r.seq);
                let detail = format!(
                    "bytes {}..{end} of {identity} declared lost by the agent: {}",
                    gap.from, gap.reason
                );
                self.report.gaps.push(located(&bytes, seq, detail));
            }
            if let Some(tail) = &file.not_yet_shipped {
                let detail = format!(
                    "bytes {}..{} of {identity} seen by the agent and not shipped as of its last record",
                    tail.start, tail.end
                );
                self.report.not_yet_shipped.push(located(tail, None, detail));
            }
        }
    }
}

fn excerpt(message: &str) -> String {
    let mut text: String = message.chars().take(80).collect();
    if message.chars().count() > 80 {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use klaxon_common::manifest_record::FORMAT_VERSION;

    /// Three batches of four events, sealed into a chain, and the events as read back
    /// (batch i ingested at 1000 + i, events a second apart).
    fn shipped() -> (Vec<ManifestRecord>, Vec<ReadEvent>) {
        let mut records: Vec<ManifestRecord> = Vec::new();
        let mut events = Vec::new();
        for batch in 0..3u64 {
            let mut digest = EventsDigest::default();
            let times: Vec<i64> = (0..4).map(|i| (batch * 4 + i) as i64 * 1000).collect();
            for &ts in &times {
                let message = format!("line {ts}");
                digest.add(ts, &message);
                events.push(ReadEvent {
                    timestamp: ts,
                    ingestion_time: 1000 + batch as i64,
                    message,
                });
            }
            let prev =
                records.last().map_or_else(|| format!("{CHAIN_START}g/s"), |r| r.hash.clone());
            records.push(
                ManifestRecord {
                    klaxon_manifest: FORMAT_VERSION,
                    seq: batch,
                    prev,
                    files: vec![FileRange {
                        path: "/var/log/app.log".into(),
                        dev: 1,
                        inode: 2,
                        fingerprint: "10:00".into(),
                        from: Some(batch * 40),
                        to: (batch + 1) * 40,
                        size: Some(120),
                    }],
                    gaps: Vec::new(),
                    events: 4,
                    rejected: 0,
                    first_ts: times[0],
                    last_ts: times[3],
                    sha256: digest.finish(),
                    hash: String::new(),
                }
                .seal(),
            );
        }
        (records, events)
    }

    fn verify(records: Vec<ManifestRecord>, mut events: Vec<ReadEvent>) -> StreamReport {
        events.sort_by_key(|e| (e.timestamp, e.ingestion_time));
        let mut verifier = Verifier::new("s", records);
        for event in events {
            verifier.push(event);
        }
        verifier.finish(None, None)
    }

    #[test]
    fn an_intact_stream_verifies_in_one_run() {
        let (records, events) = shipped();
        let report = verify(records, events);
        assert!(report.passed(), "{report:#?}");
        assert_eq!(report.verified.len(), 1);
        assert_eq!((report.verified[0].first_seq, report.verified[0].last_seq), (0, 2));
        assert_eq!(report.verified[0].events, 12);
    }

    #[test]
    fn a_resent_batch_is_a_duplicate_not_tampering() {
        let (records, mut events) = shipped();
        // The agent was killed with batch 1 in flight: CloudWatch kept it, and after the
        // restart the same lines came again, re-read with new times, in a new batch.
        let resent: Vec<ReadEvent> = events[4..8]
            .iter()
            .map(|e| ReadEvent { ingestion_time: 999, timestamp: e.timestamp - 500, ..e.clone() })
            .collect();
        events.extend(resent);
        let report = verify(records, events);
        assert!(report.passed(), "{report:#?}");
        assert_eq!(report.duplicates.len(), 1, "{report:#?}");
        assert_eq!(report.duplicates[0].events, 4);
    }

    #[test]
    fn tampering_is_found_and_located() {
        let (records, events) = shipped();
        let mut missing = events.clone();
        missing.remove(5);
        let report = verify(records.clone(), missing);
        assert!(!report.passed());
        assert_eq!(report.missing.len(), 1, "{report:#?}");
        assert_eq!(report.missing[0].seq, Some(1));
        assert!(
            report.missing[0]
                .detail
                .contains("1 of 4 events missing (record 1: bytes 40..80 of /var/log/app.log)"),
            "{}",
            report.missing[0].detail
        );

        let mut altered = events.clone();
        altered[6].message.push('!');
        let report = verify(records.clone(), altered);
        assert_eq!(
            report.altered.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [Some(1)],
            "{report:#?}"
        );

        let mut injected = events.clone();
        injected.push(ReadEvent {
            timestamp: 9_500,
            ingestion_time: 5000,
            message: "rm -rf".into(),
        });
        let report = verify(records.clone(), injected);
        assert_eq!(report.extra.len(), 1, "{report:#?}");
        assert!(report.extra[0].detail.contains("\"rm -rf\""), "{}", report.extra[0].detail);

        let mut without_record = records.clone();
        without_record.remove(1);
        let report = verify(without_record, events.clone());
        assert!(
            report.chain[0].detail.contains("broken chain: record 2 does not follow record 0"),
            "{report:#?}"
        );
        assert_eq!(report.extra.len(), 1, "batch 1 has no record: {report:#?}");

        let mut forged = records;
        forged[2].events = 3;
        let report = verify(forged, events);
        assert!(report.chain.iter().any(|f| f.detail.contains("altered")), "{report:#?}");
    }

    #[test]
    fn bytes_neither_shipped_nor_declared_are_lost_and_declared_ones_are_gaps() {
        let (mut records, mut events) = shipped();
        // Batch 1 never reached the manifest or the stream, and nothing declared it.
        records.remove(1);
        records[1].prev = records[0].hash.clone();
        records[1].seq = 1;
        let rechained: Vec<ManifestRecord> =
            records.iter().cloned().map(ManifestRecord::seal).collect();
        events.drain(4..8);
        let report = verify(rechained.clone(), events.clone());
        assert_eq!(report.verdict(), Verdict::LostOrAltered, "{report:#?}");
        assert_eq!(report.lost.len(), 1, "{report:#?}");
        let detail = &report.lost[0].detail;
        assert!(
            detail.starts_with("bytes 40..80 of /var/log/app.log (device 1, inode 2, first bytes 10:00) were neither shipped nor declared lost (between records 0 and 1)"),
            "{detail}"
        );

        // The same bytes, declared by the agent in the record that carried its marker.
        let mut declared = rechained;
        declared[0].gaps.push(klaxon_common::manifest_record::DeclaredGap {
            path: "/var/log/app.log".into(),
            dev: 1,
            inode: 2,
            fingerprint: "10:00".into(),
            from: 40,
            to: Some(80),
            reason: "deleted before it was read to its end".into(),
        });
        let declared: Vec<ManifestRecord> = declared
            .into_iter()
            .scan(None::<String>, |prev, record| {
                let record =
                    ManifestRecord { prev: prev.clone().unwrap_or(record.prev), ..record }.seal();
                *prev = Some(record.hash.clone());
                Some(record)
            })
            .collect();
        let report = verify(declared, events);
        assert_eq!(report.verdict(), Verdict::CompleteExceptDeclaredGaps, "{report:#?}");
        assert!(report.gaps[0].detail.contains("bytes 40..80 of /var/log/app.log"), "{report:#?}");
    }
}
