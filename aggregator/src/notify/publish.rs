//! Sending an outbox entry to SNS: Publish with the route's structure, the attributes,
//! and the FIFO ids; errors sorted into "try again" and "SNS will never take this".

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_sns::types::MessageAttributeValue;

use super::message::Envelope;
use super::settings::Structure;
use crate::source::SourceError;

/// Why a Publish failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Throttling, a 5xx, the network, missing permissions: try again later.
    #[error("{0}")]
    Retryable(String),
    /// The request itself is refused (bad parameter, no such topic): trying again is futile.
    #[error("{0}")]
    Refused(String),
}

/// Where notifications go. SNS in production; tests may record them instead.
pub trait Publisher: Send + Sync + 'static {
    fn publish(&self, envelope: &Envelope)
    -> impl Future<Output = Result<(), PublishError>> + Send;
}

/// Error codes that say the request can never succeed as it is.
const REFUSED: [&str; 4] =
    ["InvalidParameter", "InvalidParameterValue", "ValidationError", "NotFound"];

/// Publishes with the AWS SDK for Rust.
#[derive(Debug, Clone)]
pub struct SnsPublisher {
    client: aws_sdk_sns::Client,
}

impl SnsPublisher {
    pub fn new(client: aws_sdk_sns::Client) -> Self {
        SnsPublisher { client }
    }
}

impl Publisher for SnsPublisher {
    async fn publish(&self, envelope: &Envelope) -> Result<(), PublishError> {
        let mut attributes = HashMap::new();
        for (name, value) in &envelope.attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|error| PublishError::Refused(error.to_string()))?;
            attributes.insert(name.clone(), value);
        }
        let mut request = self
            .client
            .publish()
            .topic_arn(&envelope.topic_arn)
            .subject(&envelope.subject)
            .message(&envelope.message)
            .set_message_attributes(Some(attributes));
        if envelope.structure == Structure::Json {
            request = request.message_structure("json");
        }
        if let Some(fifo) = &envelope.fifo {
            request = request
                .message_group_id(&fifo.group_id)
                .message_deduplication_id(&fifo.deduplication_id);
        }
        request.send().await.map(|_| ()).map_err(|error| {
            let error = SourceError::from_sdk("Publish", &error);
            if REFUSED.contains(&error.code.as_str()) {
                PublishError::Refused(error.to_string())
            } else {
                PublishError::Retryable(error.to_string())
            }
        })
    }
}
