//! Where batches go: the [`LogSink`] trait, and its CloudWatch Logs implementation,
//! which creates the group (with its retention) and the stream on first use.

use std::future::Future;

use aws_sdk_cloudwatchlogs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::operation::put_log_events::PutLogEventsError;
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use klaxon_common::aws_error::{Action, action_for};
use tracing::{info, warn};

use super::batch::OutEvent;
use crate::destination::Destination;

/// Events CloudWatch Logs accepted the batch without (indexes into the sent batch).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// Events before this index were too old.
    pub too_old_end: Option<usize>,
    /// Events before this index were older than the group's retention.
    pub expired_end: Option<usize>,
    /// Events from this index on were too far in the future.
    pub too_new_start: Option<usize>,
}

impl Rejected {
    /// Every rejected event's index, with the reason, in a batch of `len` events.
    pub fn reasons(&self, len: usize) -> Vec<(usize, &'static str)> {
        let mut out: Vec<(usize, &'static str)> = Vec::new();
        let expired = self.expired_end.unwrap_or(0).min(len);
        let too_old = self.too_old_end.unwrap_or(0).min(len);
        for index in 0..expired.max(too_old) {
            out.push((
                index,
                if index < expired { "older than the group's retention" } else { "too old" },
            ));
        }
        for index in self.too_new_start.unwrap_or(len).min(len)..len {
            out.push((index, "too far in the future"));
        }
        out
    }
}

/// Why a batch was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// Throttling, a server or network error, expired credentials, a missing permission:
    /// the batch waits and is sent again; `action` says how long to wait.
    #[error("{message}")]
    Later { action: Action, message: String },
    /// The request itself was refused and never will be accepted.
    #[error("{0}")]
    Refused(String),
}

/// Sends one batch to one stream.
pub trait LogSink: Send + Sync + 'static {
    fn put(
        &self,
        destination: &Destination,
        events: &[OutEvent],
    ) -> impl Future<Output = Result<Rejected, PutError>> + Send;
}

/// CloudWatch Logs through the AWS SDK.
#[derive(Debug, Clone)]
pub struct CloudWatchLogs {
    client: aws_sdk_cloudwatchlogs::Client,
}

impl CloudWatchLogs {
    pub fn new(client: aws_sdk_cloudwatchlogs::Client) -> Self {
        CloudWatchLogs { client }
    }

    /// Creates the group and the stream; "already exists" is success.
    async fn create(&self, destination: &Destination) -> Result<(), PutError> {
        let group = self.client.create_log_group().log_group_name(&destination.group).send().await;
        match group {
            Ok(_) => {
                info!(message = "Created log group.", group = %destination.group);
                if let Some(days) = destination.retention_days {
                    self.client
                        .put_retention_policy()
                        .log_group_name(&destination.group)
                        .retention_in_days(i32::try_from(days).unwrap_or(i32::MAX))
                        .send()
                        .await
                        .map_err(classify)?;
                }
            }
            Err(error) if error.code() == Some("ResourceAlreadyExistsException") => {}
            Err(error) => return Err(classify(error)),
        }
        let stream = self
            .client
            .create_log_stream()
            .log_group_name(&destination.group)
            .log_stream_name(&destination.stream)
            .send()
            .await;
        match stream {
            Ok(_) => Ok(()),
            Err(error) if error.code() == Some("ResourceAlreadyExistsException") => Ok(()),
            Err(error) => Err(classify(error)),
        }
    }

    async fn put_once(
        &self,
        destination: &Destination,
        events: Vec<InputLogEvent>,
    ) -> Result<Rejected, SdkError<PutLogEventsError>> {
        let output = self
            .client
            .put_log_events()
            .log_group_name(&destination.group)
            .log_stream_name(&destination.stream)
            .set_log_events(Some(events))
            .send()
            .await?;
        let index = |value: Option<i32>| value.and_then(|v| usize::try_from(v).ok());
        Ok(output.rejected_log_events_info().map_or_else(Rejected::default, |info| Rejected {
            too_old_end: index(info.too_old_log_event_end_index()),
            expired_end: index(info.expired_log_event_end_index()),
            too_new_start: index(info.too_new_log_event_start_index()),
        }))
    }
}

impl LogSink for CloudWatchLogs {
    async fn put(
        &self,
        destination: &Destination,
        events: &[OutEvent],
    ) -> Result<Rejected, PutError> {
        // The request owns its events; they are built again only in the rare case of a
        // group or stream to create first, not copied for every attempt.
        match self.put_once(destination, input_events(events)?).await {
            Err(SdkError::ServiceError(error))
                if matches!(error.err(), PutLogEventsError::ResourceNotFoundException(_)) =>
            {
                self.create(destination).await?;
                self.put_once(destination, input_events(events)?).await.map_err(classify)
            }
            result => result.map_err(classify),
        }
    }
}

/// A batch as the SDK's request takes it.
fn input_events(events: &[OutEvent]) -> Result<Vec<InputLogEvent>, PutError> {
    events
        .iter()
        .map(|event| {
            InputLogEvent::builder()
                .timestamp(event.timestamp_ms)
                .message(event.message.clone())
                .build()
                .map_err(|error| PutError::Refused(error.to_string()))
        })
        .collect()
}

/// Sorts an SDK error by what to do about it (`klaxon_common::aws_error`'s table).
fn classify<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    error: SdkError<E>,
) -> PutError {
    let status = error.raw_response().map(|response| response.status().as_u16());
    let message = format!("{}", aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&error));
    let action = match &error {
        SdkError::ServiceError(service) => action_for(service.err().code(), status),
        SdkError::ConstructionFailure(_) => Action::GiveUp,
        _ => Action::Retry,
    };
    put_error(action, message)
}

/// The error for a failure the table sorted as `action`.
pub fn put_error(action: Action, message: String) -> PutError {
    if action.may_succeed_later() {
        return PutError::Later { action, message };
    }
    warn!(message = "CloudWatch Logs refused a request.", error = %message);
    PutError::Refused(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_indexes_name_each_event_and_its_reason() {
        let rejected =
            Rejected { too_old_end: Some(2), expired_end: Some(1), too_new_start: Some(4) };
        assert_eq!(
            rejected.reasons(5),
            [(0, "older than the group's retention"), (1, "too old"), (4, "too far in the future")]
        );
        assert!(Rejected::default().reasons(3).is_empty());
    }
}
