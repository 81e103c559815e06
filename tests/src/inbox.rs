//! An SNS topic with an SQS queue subscribed to it: the "inbox" where tests and the demo
//! read the alerts Klaxon publishes, as an on-call person's phone would receive them.

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A topic and the queue that receives everything published to it.
pub struct Inbox {
    pub topic_arn: String,
    queue_url: String,
    sqs: aws_sdk_sqs::Client,
}

/// One SNS notification as the queue receives it (the SNS JSON envelope).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Notification {
    /// The body SNS picked for this subscriber (`sqs`, else `default`, with JSON structure).
    pub message: String,
    pub subject: Option<String>,
    pub topic_arn: String,
    #[serde(default)]
    pub message_attributes: BTreeMap<String, Attribute>,
}

/// A message attribute as SNS delivers it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attribute {
    #[serde(rename = "Type")]
    pub data_type: String,
    pub value: String,
}

impl Inbox {
    /// Creates the topic `name` and the queue `name-inbox` subscribed to it.
    pub async fn create(config: &SdkConfig, name: &str) -> anyhow::Result<Inbox> {
        let sns = aws_sdk_sns::Client::new(config);
        let sqs = aws_sdk_sqs::Client::new(config);
        let topic = sns.create_topic().name(name).send().await?;
        let topic_arn = topic.topic_arn().unwrap_or_default().to_owned();
        let queue = sqs.create_queue().queue_name(format!("{name}-inbox")).send().await?;
        let queue_url = queue.queue_url().unwrap_or_default().to_owned();
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?;
        let queue_arn = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .ok_or_else(|| anyhow::anyhow!("queue {queue_url} has no ARN"))?;
        sns.subscribe().topic_arn(&topic_arn).protocol("sqs").endpoint(queue_arn).send().await?;
        Ok(Inbox { topic_arn, queue_url, sqs })
    }

    /// The notifications waiting in the queue (up to 10), removed from it.
    pub async fn receive(&self) -> anyhow::Result<Vec<Notification>> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .send()
            .await?;
        let mut notifications = Vec::new();
        for message in received.messages() {
            notifications.push(serde_json::from_str(message.body().unwrap_or_default())?);
            if let Some(handle) = message.receipt_handle() {
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
        }
        Ok(notifications)
    }
}
