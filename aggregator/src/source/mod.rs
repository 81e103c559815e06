//! Where rules read their data: CloudWatch metrics and CloudWatch Logs. The only module of
//! the aggregator that calls AWS for rule data.

pub mod logs;
pub mod metrics;

/// A CloudWatch call that failed: which API, with what error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{api}: {code}: {message}")]
pub struct SourceError {
    pub api: &'static str,
    /// The AWS error code (`ThrottlingException`, `AccessDenied` …) or `network`.
    pub code: String,
    pub message: String,
}

impl SourceError {
    /// From any SDK error (CloudWatch's and CloudWatch Logs' share the error traits).
    pub fn from_sdk<E, R>(
        api: &'static str,
        error: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
    ) -> Self
    where
        E: aws_sdk_cloudwatch::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = aws_sdk_cloudwatch::error::ProvideErrorMetadata::code(error)
            .unwrap_or("network")
            .to_owned();
        let message = aws_sdk_cloudwatch::error::ProvideErrorMetadata::message(error).map_or_else(
            || aws_sdk_cloudwatch::error::DisplayErrorContext(error).to_string(),
            str::to_owned,
        );
        SourceError { api, code, message }
    }
}

#[cfg(test)]
pub mod fake;
