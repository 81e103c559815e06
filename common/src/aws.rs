//! Loading the AWS SDK configuration for both daemons and the CLI: the ordinary chain
//! (credentials, region, `AWS_ENDPOINT_URL` and the per-service `AWS_ENDPOINT_URL_*`,
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`), connect and attempt timeouts, and who retries:
//! where Klaxon has a retry loop of its own (the agent's shippers), the SDK makes a
//! single attempt, since two layers would multiply retries and hide them.
//!
//! aws-config's IMDS clients ignore `AWS_EC2_METADATA_DISABLED` (checked: they still
//! connect to 169.254.169.254), so Klaxon reads that variable itself: when it is set the
//! credential and region chains are built without their IMDS links.

use std::time::Duration;

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::{ProfileFileCredentialsProvider, ProfileFileRegionProvider};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// How long a connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one attempt of a call may take, response included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `AWS_EC2_METADATA_DISABLED` forbids IMDS calls.
pub fn imds_disabled() -> bool {
    imds_disabled_by(std::env::var("AWS_EC2_METADATA_DISABLED").ok().as_deref())
}

/// Whether this value of `AWS_EC2_METADATA_DISABLED` forbids IMDS calls (`true`, any case).
pub fn imds_disabled_by(value: Option<&str>) -> bool {
    value.is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

/// Who retries a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// The SDK's standard retries (3 attempts): for callers without a loop of their own.
    Sdk,
    /// One attempt: the caller retries, counts and backs off.
    Caller,
}

/// The SDK configuration from the environment, with Klaxon's timeouts, `retries`, and no
/// IMDS link when `AWS_EC2_METADATA_DISABLED` says so.
pub async fn load_sdk_config(retries: Retries) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build();
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(match retries {
            Retries::Sdk => RetryConfig::standard(),
            Retries::Caller => RetryConfig::disabled(),
        });
    if !imds_disabled() {
        return loader.load().await;
    }
    let credentials = CredentialsProviderChain::first_try(
        "Environment",
        EnvironmentVariableCredentialsProvider::new(),
    )
    .or_else("Profile", ProfileFileCredentialsProvider::builder().build())
    .or_else(
        "WebIdentityToken",
        aws_config::web_identity_token::WebIdentityTokenCredentialsProvider::builder().build(),
    )
    .or_else("EcsContainer", aws_config::ecs::EcsCredentialsProvider::builder().build());
    let region = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
        .or_else(ProfileFileRegionProvider::new());
    loader.credentials_provider(credentials).region(region).load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_true_disables_imds() {
        assert!(imds_disabled_by(Some("true")));
        assert!(imds_disabled_by(Some(" TRUE ")));
        assert!(!imds_disabled_by(Some("false")));
        assert!(!imds_disabled_by(Some("1")));
        assert!(!imds_disabled_by(None));
    }
}
