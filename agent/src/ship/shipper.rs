//! One shipper per log stream: it turns what the reader hands on into batches, sends one
//! at a time (retrying with backoff, never reordering), and only after CloudWatch
//! acknowledged a batch does it seal the batch's manifest record, move the files'
//! checkpoints and free the memory budget. Manifest records go out to the companion
//! stream in batches of their own, every few seconds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{error, warn};

use super::batch::{Batch, EVENT_OVERHEAD_BYTES, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, OutEvent};
use super::manifest::{BatchSummary, Manifests, manifest_destination};
use super::sink::{LogSink, PutError, Rejected};
use crate::budget::ByteBudget;
use crate::destination::Destination;
use crate::stats::AgentStats;
use crate::tail::checkpoint::Checkpoints;
use crate::tail::outlet::{FileRef, ShipItem, event_bytes, gap_marker};
use crate::tail::reader::Position;
use klaxon_common::aws_error::Action;
use klaxon_common::backoff::Backoff;
use klaxon_common::clock::unix_ms;
use klaxon_common::manifest_record::{DeclaredGap, EventsDigest, FileRange};

/// How long the first event of a batch waits for others before the batch is sent.
pub const BATCH_WAIT: Duration = Duration::from_secs(1);
/// How long a manifest record waits for others before they are shipped together, and
/// how many go in one call at most: one PutLogEvents per stream every 10 s at most.
const MANIFEST_WAIT: Duration = Duration::from_secs(10);
const MANIFEST_BATCH: usize = 500;
/// The first wait before a failed PutLogEvents is sent again, and the longest: after an
/// outage, shipping resumes within `RETRY_MAX_DELAY`.
const RETRY_BASE_DELAY: Duration = Duration::from_millis(200);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(10);

/// One queued entry, in the order it was read.
#[derive(Debug)]
enum Queued {
    Event {
        event: OutEvent,
        origin: Origin,
        /// Budget bytes to give back once acknowledged (0 for the shipper's own notices).
        reserved: u64,
    },
    /// A file was read to this offset.
    ReadTo(Arc<FileRef>, u64),
    /// A file's content starts again at 0.
    Restart(Arc<FileRef>),
    Done(Arc<FileRef>),
}

/// Where a queued event comes from, which its acknowledgement records.
#[derive(Debug, Clone)]
enum Origin {
    /// A file: the position the event completes, and the file's size when read.
    File { file: Arc<FileRef>, position: Position, seen: u64 },
    /// The marker of bytes lost.
    Gap(DeclaredGap),
    /// A notice of the shipper's own.
    Agent,
}

/// What a shipper shares with the rest of the agent.
#[derive(Clone)]
pub struct ShipperContext {
    pub checkpoints: Arc<Mutex<Checkpoints>>,
    pub manifests: Arc<Mutex<Manifests>>,
    pub budget: Arc<ByteBudget>,
    pub stats: Arc<AgentStats>,
}

/// Ships the items of `receiver` to `destination` until the channel closes and all is sent.
pub async fn run_shipper<S: LogSink>(
    destination: Destination,
    mut receiver: mpsc::UnboundedReceiver<ShipItem>,
    sink: Arc<S>,
    context: ShipperContext,
) {
    let mut queue: VecDeque<Queued> = VecDeque::new();
    let mut queued_bytes = 0usize;
    let mut open = true;
    // When the manifest records waiting must be shipped.
    let mut manifests_due = Some(Instant::now());
    loop {
        if queue.is_empty() {
            let item = match manifests_due {
                _ if !open => None,
                Some(due) => tokio::select! {
                    item = receiver.recv() => item,
                    () = tokio::time::sleep_until(due) => {
                        manifests_due = ship_manifests(&destination, sink.as_ref(), &context).await;
                        continue;
                    }
                },
                None => receiver.recv().await,
            };
            match item {
                Some(item) => queued_bytes += enqueue(&mut queue, item),
                None => {
                    ship_manifests(&destination, sink.as_ref(), &context).await;
                    return;
                }
            }
        }
        let deadline = Instant::now() + BATCH_WAIT;
        while open && queued_bytes < MAX_BATCH_BYTES && queue.len() < MAX_BATCH_EVENTS {
            tokio::select! {
                item = receiver.recv() => match item {
                    Some(item) => queued_bytes += enqueue(&mut queue, item),
                    None => open = false,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        apply_file_changes(&destination, &mut queue, &context);
        let (batch, sources, reserved) = take_batch(&mut queue);
        if batch.is_empty() {
            continue;
        }
        queued_bytes = queued_bytes.saturating_sub(batch.bytes());
        let sent = SentBatch { batch, sources, reserved };
        send_batch(&destination, sent, sink.as_ref(), &context, &mut queue).await;
        let waiting = lock(&context.manifests).pending(&destination).len();
        manifests_due = match manifests_due {
            _ if waiting >= MANIFEST_BATCH => {
                ship_manifests(&destination, sink.as_ref(), &context).await
            }
            Some(due) => Some(due),
            None => Some(Instant::now() + MANIFEST_WAIT),
        };
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Ships the manifest records an earlier run left waiting, stream by stream: a stream
/// that gets no new line has no shipper to send them. A refusal keeps them for later.
pub async fn ship_waiting_manifests<S: LogSink>(sink: Arc<S>, context: ShipperContext) {
    let waiting = lock(&context.manifests).waiting_streams();
    for (group, stream) in waiting {
        let destination = Destination { group, stream, retention_days: None };
        ship_manifests(&destination, sink.as_ref(), &context).await;
    }
}

/// Ships the stream's waiting manifest records; returns when to ship again (None: no
/// record waits). Failures are retried like batches; a refusal keeps the records.
async fn ship_manifests<S: LogSink>(
    destination: &Destination,
    sink: &S,
    context: &ShipperContext,
) -> Option<Instant> {
    loop {
        let records: Vec<_> = lock(&context.manifests)
            .pending(destination)
            .iter()
            .take(MANIFEST_BATCH)
            .cloned()
            .collect();
        let last = records.last().map(|r| r.seq)?;
        let timestamp_ms = unix_ms(std::time::SystemTime::now());
        let events: Vec<OutEvent> = records
            .iter()
            .map(|record| OutEvent {
                timestamp_ms,
                message: serde_json::to_string(record).unwrap_or_default(),
            })
            .collect();
        let manifest = manifest_destination(destination);
        if let Err(error) = put_until_answered(&manifest, &events, sink, context).await {
            error!(message = "CloudWatch Logs refused manifest records; they are kept.", group = %manifest.group, stream = %manifest.stream, %error);
            return Some(Instant::now() + MANIFEST_WAIT);
        }
        let mut manifests = lock(&context.manifests);
        manifests.shipped(destination, last);
        if let Err(error) = manifests.save() {
            error!(message = "Cannot save the manifests.", %error);
        }
    }
}

/// Sends `events` until CloudWatch Logs answers: accepted (perhaps with rejected events)
/// or refused for good.
async fn put_until_answered<S: LogSink>(
    destination: &Destination,
    events: &[OutEvent],
    sink: &S,
    context: &ShipperContext,
) -> Result<Rejected, PutError> {
    let mut backoff = Backoff::new(RETRY_BASE_DELAY, RETRY_MAX_DELAY);
    loop {
        match sink.put(destination, events).await {
            Ok(rejected) => return Ok(rejected),
            Err(PutError::Later { action, message }) => {
                context.stats.retries.add(1);
                let delay = match action {
                    Action::BackOff => backoff.next_throttled_delay(),
                    _ => backoff.next_delay(),
                };
                warn!(message = "PutLogEvents failed; retrying.", group = %destination.group, stream = %destination.stream, ?action, error = %message, delay = ?delay);
                tokio::time::sleep(delay).await;
            }
            Err(refused @ PutError::Refused(_)) => return Err(refused),
        }
    }
}

/// Queues an item's events; returns their size as CloudWatch counts it.
fn enqueue(queue: &mut VecDeque<Queued>, item: ShipItem) -> usize {
    match item {
        ShipItem::Events { file, events, seen } => {
            let mut bytes = 0;
            for event in events {
                let reserved = event_bytes(&event.message);
                bytes += event.message.len() + EVENT_OVERHEAD_BYTES;
                let origin =
                    Origin::File { file: Arc::clone(&file), position: event.position, seen };
                let event = OutEvent { timestamp_ms: event.timestamp_ms, message: event.message };
                queue.push_back(Queued::Event { event, origin, reserved });
            }
            bytes
        }
        ShipItem::Gap { file, from, to, reason } => {
            let message = gap_marker(&file, from, to, reason);
            let reserved = event_bytes(&message);
            let gap = DeclaredGap {
                path: file.path.display().to_string(),
                dev: file.key.dev,
                inode: file.key.ino,
                fingerprint: fingerprint_text(&file),
                from,
                to,
                reason: reason.to_owned(),
            };
            let event = OutEvent { timestamp_ms: unix_ms(std::time::SystemTime::now()), message };
            let bytes = event.size();
            queue.push_back(Queued::Event { event, origin: Origin::Gap(gap), reserved });
            bytes
        }
        ShipItem::ReadTo { file, offset } => {
            queue.push_back(Queued::ReadTo(file, offset));
            0
        }
        ShipItem::Restart { file } => {
            queue.push_back(Queued::Restart(file));
            0
        }
        ShipItem::Done { file } => {
            queue.push_back(Queued::Done(file));
            0
        }
    }
}

/// What changes of files are at the front of the queue, all before them acknowledged:
/// a file read further than its last event (blank lines) records that, a finished
/// file's checkpoint goes, a restarted one's starts again at 0.
fn apply_file_changes(
    destination: &Destination,
    queue: &mut VecDeque<Queued>,
    context: &ShipperContext,
) {
    loop {
        match queue.front() {
            Some(Queued::ReadTo(file, offset)) => {
                let behind = lock(&context.checkpoints)
                    .acknowledged(&file.key, file.epoch)
                    .is_some_and(|acknowledged| acknowledged < *offset);
                if behind {
                    let position = Position::at(*offset);
                    let read = [Origin::File { file: Arc::clone(file), position, seen: *offset }];
                    acknowledge(destination, &read, summarize(&[], &[]), context);
                }
            }
            Some(Queued::Done(file)) => lock(&context.checkpoints).finish(file),
            Some(Queued::Restart(file)) => {
                lock(&context.checkpoints).acknowledge(file, Position::at(0));
            }
            _ => return,
        }
        queue.pop_front();
        let mut checkpoints = lock(&context.checkpoints);
        if let Err(error) = checkpoints.save() {
            error!(message = "Cannot save checkpoints.", %error);
        }
    }
}

/// For each event of a batch, in read order: where it comes from.
type Sources = Vec<Origin>;

/// The longest run of events at the front of the queue that fits one batch.
/// Also the budget bytes the batch holds.
fn take_batch(queue: &mut VecDeque<Queued>) -> (Batch, Sources, u64) {
    let mut batch = Batch::default();
    let mut sources = Vec::new();
    let mut reserved_total = 0;
    while let Some(Queued::Event { .. }) = queue.front() {
        let Some(Queued::Event { event, origin, reserved }) = queue.pop_front() else { break };
        match batch.try_add(event) {
            Ok(()) => {
                sources.push(origin);
                reserved_total += reserved;
            }
            Err(event) => {
                queue.push_front(Queued::Event { event, origin, reserved });
                break;
            }
        }
    }
    (batch, sources, reserved_total)
}

/// A batch with what its acknowledgement moves and frees.
struct SentBatch {
    batch: Batch,
    sources: Sources,
    reserved: u64,
}

/// Sends until CloudWatch answers for the batch, then acknowledges it.
async fn send_batch<S: LogSink>(
    destination: &Destination,
    sent: SentBatch,
    sink: &S,
    context: &ShipperContext,
    queue: &mut VecDeque<Queued>,
) {
    let SentBatch { batch, sources, reserved } = sent;
    let batch_bytes = batch.bytes() as u64;
    let events = batch.into_events();
    // What CloudWatch Logs did not keep: the indexes, and why (for the marker).
    let (rejected, why): (Vec<usize>, String) = match put_until_answered(
        destination,
        &events,
        sink,
        context,
    )
    .await
    {
        Ok(answer) => {
            context.stats.batches.add(1);
            context.stats.events_sent.add(events.len() as u64);
            context.stats.bytes_sent.add(batch_bytes);
            let reasons = answer.reasons(events.len());
            let why = reasons
                .first()
                .map(|(_, reason)| format!("rejected by CloudWatch Logs ({reason})"));
            (reasons.iter().map(|&(index, _)| index).collect(), why.unwrap_or_default())
        }
        Err(error) => {
            error!(message = "CloudWatch Logs refused a batch; it is dropped.", group = %destination.group, stream = %destination.stream, %error);
            ((0..events.len()).collect(), format!("refused by CloudWatch Logs: {error}"))
        }
    };
    if !rejected.is_empty() {
        context.stats.events_rejected.add(rejected.len() as u64);
        let lines = rejected.len();
        let bytes: usize = rejected.iter().map(|&index| events[index].message.len()).sum();
        warn!(message = "CloudWatch Logs did not keep events.", group = %destination.group, stream = %destination.stream, lines, bytes, why);
        queue_notice(queue, format!("[klaxon: gap: {lines} lines / {bytes} bytes {why}]"));
    }
    acknowledge(destination, &sources, summarize(&events, &rejected), context);
    context.budget.release(reserved);
}

/// What CloudWatch Logs kept of a sent batch: the digest of its accepted events and
/// their time span, and how many it did not keep (rejected, or all of a refused batch).
fn summarize(events: &[OutEvent], rejected: &[usize]) -> (EventsDigest, u64, i64, i64) {
    let mut digest = EventsDigest::default();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for (index, event) in events.iter().enumerate() {
        if rejected.contains(&index) {
            continue;
        }
        digest.add(event.timestamp_ms, &event.message);
        first = first.min(event.timestamp_ms);
        last = last.max(event.timestamp_ms);
    }
    if digest.count() == 0 {
        (first, last) = (0, 0);
    }
    (digest, rejected.len() as u64, first, last)
}

/// Each file's byte range in a batch: from its last acknowledged offset to the batch's.
fn file_ranges(sources: &[Origin], checkpoints: &Checkpoints) -> Vec<FileRange> {
    let mut ranges: Vec<FileRange> = Vec::new();
    for source in sources {
        let Origin::File { file, position, seen } = source else { continue };
        let known = ranges.iter_mut().find(|r| r.dev == file.key.dev && r.inode == file.key.ino);
        match known {
            Some(range) => {
                range.to = position.offset;
                range.size = Some(*seen);
            }
            None => ranges.push(FileRange {
                path: file.path.display().to_string(),
                dev: file.key.dev,
                inode: file.key.ino,
                fingerprint: fingerprint_text(file),
                from: checkpoints.acknowledged(&file.key, file.epoch),
                to: position.offset,
                size: Some(*seen),
            }),
        }
    }
    ranges
}

/// A file's fingerprint as manifests write it, `LEN:HEX`.
fn fingerprint_text(file: &FileRef) -> String {
    format!("{}:{:016x}", file.fingerprint.len, file.fingerprint.hash)
}

/// A notice goes first in the next batch.
fn queue_notice(queue: &mut VecDeque<Queued>, text: String) {
    let timestamp_ms = unix_ms(std::time::SystemTime::now());
    let event = OutEvent { timestamp_ms, message: text };
    queue.push_front(Queued::Event { event, origin: Origin::Agent, reserved: 0 });
}

/// Seals the batch's manifest record (saved first: no checkpoint moves past a batch
/// without its record), then moves each file's checkpoint to its last acknowledged
/// position, and saves.
fn acknowledge(
    destination: &Destination,
    sources: &[Origin],
    (digest, rejected, first_ts, last_ts): (EventsDigest, u64, i64, i64),
    context: &ShipperContext,
) {
    let mut checkpoints = lock(&context.checkpoints);
    let files = file_ranges(sources, &checkpoints);
    let gaps = sources
        .iter()
        .filter_map(|source| match source {
            Origin::Gap(gap) => Some(gap.clone()),
            _ => None,
        })
        .collect();
    let batch = BatchSummary { files, gaps, digest, rejected, first_ts, last_ts };
    let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut manifests = lock(&context.manifests);
    manifests.append(destination, batch, &started);
    if let Err(error) = manifests.save() {
        error!(message = "Cannot save the manifests.", %error);
    }
    drop(manifests);
    for source in sources {
        let Origin::File { file, position, .. } = source else { continue };
        checkpoints.acknowledge(file, *position);
    }
    if let Err(error) = checkpoints.save() {
        error!(message = "Cannot save checkpoints.", %error);
    }
}
