//! PutLogEvents batches that respect every limit of the API: at most 1,048,576 bytes
//! (UTF-8 message bytes + 26 per event), 10,000 events, a 24-hour span, chronological.

/// PutLogEvents' limit on a batch, in bytes.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// What CloudWatch Logs counts for each event besides its message.
pub const EVENT_OVERHEAD_BYTES: usize = 26;
/// PutLogEvents' limit on events in a batch.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// The span of a batch must stay under 24 hours.
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 3600 * 1000 - 1;

/// An event bound for CloudWatch Logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutEvent {
    pub timestamp_ms: i64,
    pub message: String,
}

impl OutEvent {
    /// What this event counts towards a batch's size.
    pub fn size(&self) -> usize {
        self.message.len() + EVENT_OVERHEAD_BYTES
    }
}

/// A batch being filled.
#[derive(Debug, Default)]
pub struct Batch {
    events: Vec<OutEvent>,
    bytes: usize,
    oldest_ms: i64,
    newest_ms: i64,
}

impl Batch {
    /// Adds `event` when it fits; hands it back when it does not.
    pub fn try_add(&mut self, event: OutEvent) -> Result<(), OutEvent> {
        let oldest = if self.events.is_empty() {
            event.timestamp_ms
        } else {
            self.oldest_ms.min(event.timestamp_ms)
        };
        let newest = if self.events.is_empty() {
            event.timestamp_ms
        } else {
            self.newest_ms.max(event.timestamp_ms)
        };
        let fits = self.events.len() < MAX_BATCH_EVENTS
            && self.bytes + event.size() <= MAX_BATCH_BYTES
            && newest - oldest <= MAX_BATCH_SPAN_MS;
        if !fits && !self.events.is_empty() {
            return Err(event);
        }
        self.bytes += event.size();
        self.oldest_ms = oldest;
        self.newest_ms = newest;
        self.events.push(event);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Bytes as CloudWatch counts them.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The events in chronological order (a stable sort: equal times keep file order).
    pub fn into_events(mut self) -> Vec<OutEvent> {
        self.events.sort_by_key(|event| event.timestamp_ms);
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(timestamp_ms: i64, bytes: usize) -> OutEvent {
        OutEvent { timestamp_ms, message: "x".repeat(bytes) }
    }

    #[test]
    fn a_batch_closes_at_exactly_one_mebibyte() {
        let mut batch = Batch::default();
        for _ in 0..4 {
            batch.try_add(event(0, MAX_BATCH_BYTES / 4 - EVENT_OVERHEAD_BYTES)).expect("fits");
        }
        assert_eq!(batch.bytes(), MAX_BATCH_BYTES);
        assert!(batch.try_add(event(0, 1)).is_err());
    }

    #[test]
    fn a_batch_closes_at_ten_thousand_events_and_at_a_day_of_span() {
        let mut batch = Batch::default();
        for i in 0..MAX_BATCH_EVENTS {
            batch.try_add(event(i as i64, 1)).expect("fits");
        }
        assert!(batch.try_add(event(0, 1)).is_err());

        let mut batch = Batch::default();
        batch.try_add(event(1_000, 1)).expect("first");
        batch.try_add(event(1_000 + MAX_BATCH_SPAN_MS, 1)).expect("just within a day");
        assert!(batch.try_add(event(999, 1)).is_err(), "would stretch the span");
    }

    #[test]
    fn events_leave_in_time_order_keeping_file_order_for_equal_times() {
        let mut batch = Batch::default();
        for (ts, text) in [(5, "b"), (3, "a"), (5, "c")] {
            batch.try_add(OutEvent { timestamp_ms: ts, message: text.into() }).expect("fits");
        }
        let order: Vec<_> = batch.into_events().into_iter().map(|e| e.message).collect();
        assert_eq!(order, ["a", "b", "c"]);
    }
}
