//! An in-memory CloudWatch Logs for tests, with fault injection: it keeps the events it
//! accepted per stream, and answers the next calls with the faults it is given, in
//! order. Faults are sorted by the same error table as the SDK sink's.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use klaxon_common::aws_error::{Action, action_for};
use tokio::sync::Notify;

use super::batch::OutEvent;
use super::sink::{LogSink, PutError, Rejected, put_error};
use crate::destination::Destination;

/// How one PutLogEvents call goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Throttle,
    ServerError,
    Timeout,
    /// Stored, but the answer is lost: the caller sends the batch again.
    AckLost,
    AccessDenied,
    ExpiredToken,
    ClockSkew,
    /// A request that never will be accepted.
    BadRequest,
}

impl Fault {
    /// The error code and HTTP status CloudWatch Logs answers with (none: no answer).
    fn answer(self) -> (Option<&'static str>, Option<u16>) {
        match self {
            Fault::Throttle => (Some("ThrottlingException"), Some(400)),
            Fault::ServerError => (Some("ServiceUnavailableException"), Some(503)),
            Fault::Timeout | Fault::AckLost => (None, None),
            Fault::AccessDenied => (Some("AccessDeniedException"), Some(400)),
            Fault::ExpiredToken => (Some("ExpiredTokenException"), Some(400)),
            Fault::ClockSkew => (Some("RequestTimeTooSkewed"), Some(400)),
            Fault::BadRequest => (Some("InvalidParameterException"), Some(400)),
        }
    }
}

#[derive(Debug, Default)]
struct Stored {
    faults: VecDeque<Fault>,
    streams: BTreeMap<Destination, Vec<OutEvent>>,
    calls: usize,
}

/// The fake; clones share one store.
#[derive(Debug, Clone, Default)]
pub struct FakeLogs {
    stored: Arc<Mutex<Stored>>,
    changed: Arc<Notify>,
}

impl FakeLogs {
    /// A fake whose next calls fail with `faults`, one each, then succeed.
    pub fn failing_with(faults: &[Fault]) -> Self {
        let fake = FakeLogs::default();
        fake.fail_next(faults);
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stored> {
        self.stored.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The messages stored in `group`, in streams not ending in `suffix`, in order.
    pub fn messages(&self, group: &str, without_suffix: &str) -> Vec<String> {
        let stored = self.lock();
        let streams = stored
            .streams
            .iter()
            .filter(|(d, _)| d.group == group && !d.stream.ends_with(without_suffix));
        streams.flat_map(|(_, events)| events.iter().map(|e| e.message.clone())).collect()
    }

    /// The messages of one stream, in the order stored.
    pub fn stream(&self, group: &str, stream: &str) -> Vec<String> {
        let stored = self.lock();
        let events = stored.streams.iter().filter(|(d, _)| d.group == group && d.stream == stream);
        events.flat_map(|(_, events)| events.iter().map(|e| e.message.clone())).collect()
    }

    /// The next calls fail with `faults`, after those already waiting.
    pub fn fail_next(&self, faults: &[Fault]) {
        self.lock().faults.extend(faults);
    }

    /// Calls answered so far.
    pub fn calls(&self) -> usize {
        self.lock().calls
    }

    /// Waits until `done` holds of the fake.
    pub async fn wait_until(&self, done: impl Fn(&FakeLogs) -> bool) {
        loop {
            let changed = self.changed.notified();
            if done(self) {
                return;
            }
            changed.await;
        }
    }
}

impl LogSink for FakeLogs {
    async fn put(
        &self,
        destination: &Destination,
        events: &[OutEvent],
    ) -> Result<Rejected, PutError> {
        let result = {
            let mut stored = self.lock();
            stored.calls += 1;
            let fault = stored.faults.pop_front();
            if fault.is_none() || fault == Some(Fault::AckLost) {
                stored.streams.entry(destination.clone()).or_default().extend_from_slice(events);
            }
            match fault {
                None => Ok(Rejected::default()),
                Some(fault) => {
                    let (code, status) = fault.answer();
                    let action = match code {
                        Some(_) => action_for(code, status),
                        None => Action::Retry,
                    };
                    Err(put_error(action, format!("{fault:?}")))
                }
            }
        };
        self.changed.notify_waiters();
        result
    }
}
