//! Notifications: alert changes from the engine become grouped, deduplicated, silenced,
//! inhibited, rate-limited SNS messages that survive crashes.
//!
//! - [`matcher`], [`policy`], [`mute`], [`silence`]: who gets what, and when not.
//! - [`dispatch`]: alerts and groups in memory, pure: what is due at a given time.
//! - [`message`]: a due notification rendered as an SNS Publish (subject, email, SMS).
//! - [`outbox`]: messages decided but not yet acknowledged by SNS, on disk.
//! - [`publish`]: the SNS client with retries; [`service`]: the tasks that run it all.

pub mod dispatch;
pub mod matcher;
pub mod message;
pub mod mute;
pub mod outbox;
pub mod policy;
pub mod publish;
pub mod service;
pub mod settings;
pub mod silence;
