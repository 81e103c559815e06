//! What to do about an AWS error: the one table that maps every error Klaxon can meet
//! (throttling, server errors, timeouts, dispatch failures, permission and credential
//! errors, clock skew, bad requests, missing resources, quotas) to one [`Action`].
//! Callers act on the action, never on codes of their own.

use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What a caller does after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A passing fault (5xx, timeout, a cut connection, clock skew the SDK corrects on
    /// the next attempt): try again after a short back-off.
    Retry,
    /// Throttled: try again after a longer back-off.
    BackOff,
    /// The credentials are expired or unknown: the next attempt fetches them anew.
    /// The data waits.
    RefreshCredentials,
    /// The group, stream or topic is gone: create it again, then retry.
    Recreate,
    /// Permission or quota: nothing will change without an operator. The data waits
    /// (bounded), the status says why, and the call is tried again slowly.
    Hold,
    /// The request itself is refused and never will be accepted: give it up loudly
    /// (a gap marker, a set-aside file, an error log).
    GiveUp,
}

impl Action {
    /// Whether the same request may succeed later.
    pub fn may_succeed_later(self) -> bool {
        self != Action::GiveUp
    }
}

/// Error codes, by what to do about them. Sources: the AWS SDKs' retry classifiers
/// (throttling and transient codes), the CloudWatch, CloudWatch Logs and SNS API
/// references' error lists, and the IAM/STS common errors.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];
const TRANSIENT: &[&str] = &[
    "InternalFailure",
    "InternalServerError",
    "InternalError",
    "InternalErrorException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "OperationAbortedException",
    "IDPCommunicationError",
    // Clock skew: the SDK measures the skew from the response's Date header and signs
    // the next attempt with the corrected time.
    "RequestExpired",
    "RequestTimeTooSkewed",
    "RequestInTheFuture",
];
const CREDENTIALS: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
];
const MISSING: &[&str] = &["ResourceNotFoundException", "NotFound", "NotFoundException"];
const HOLD: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "AuthorizationErrorException",
    "NotAuthorized",
    "UnauthorizedOperation",
    "OptInRequired",
    "LimitExceededException",
    "LimitExceeded",
    "ServiceQuotaExceededException",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSInvalidStateException",
    "KMSNotFoundException",
];

/// The action for an error with this code and HTTP status.
pub fn action_for(code: Option<&str>, status: Option<u16>) -> Action {
    let listed = |list: &[&str]| code.is_some_and(|code| list.contains(&code));
    if listed(THROTTLING) || status == Some(429) {
        Action::BackOff
    } else if listed(CREDENTIALS) {
        Action::RefreshCredentials
    } else if listed(MISSING) {
        Action::Recreate
    } else if listed(HOLD) || status == Some(403) {
        Action::Hold
    } else if listed(TRANSIENT) || status.is_some_and(|status| status >= 500) {
        Action::Retry
    } else {
        Action::GiveUp
    }
}

/// An AWS call that failed: which, why, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct AwsError {
    /// The API operation, as IAM names it (`PutLogEvents`).
    pub operation: &'static str,
    /// The service's error code, when it answered with one.
    pub code: Option<String>,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The whole error, with its causes.
    pub message: String,
    pub action: Action,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed ({:?}): {}", self.operation, self.action, self.message)
    }
}

impl AwsError {
    /// An error made by hand (fakes and tests).
    pub fn new(operation: &'static str, code: &str, action: Action) -> Self {
        AwsError {
            operation,
            code: Some(code.to_owned()),
            status: None,
            message: code.to_owned(),
            action,
        }
    }

    /// Classifies an SDK error of `operation`.
    pub fn from_sdk<E>(operation: &'static str, error: &SdkError<E, Response>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = error.raw_response().map(|response| response.status().as_u16());
        let message = DisplayErrorContext(error).to_string();
        let (code, action) = match error {
            SdkError::ServiceError(service) => {
                let code = service.err().code().map(str::to_owned);
                let action = action_for(code.as_deref(), status);
                (code, action)
            }
            // No request could be built: credentials that could not be loaded are worth
            // another try; anything else is a request that never will be.
            SdkError::ConstructionFailure(_) => {
                let lower = message.to_ascii_lowercase();
                let credentials = lower.contains("credential") || lower.contains("identity");
                (None, if credentials { Action::RefreshCredentials } else { Action::GiveUp })
            }
            // Timeouts, connections refused or cut, unreadable responses.
            _ => (None, Action::Retry),
        };
        AwsError { operation, code, status, message, action }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_of_error_has_its_action() {
        let cases = [
            (Some("ThrottlingException"), Some(400), Action::BackOff),
            (Some("Throttling"), Some(400), Action::BackOff),
            (None, Some(429), Action::BackOff),
            (Some("ServiceUnavailableException"), Some(503), Action::Retry),
            (Some("Whatever"), Some(500), Action::Retry),
            (Some("RequestExpired"), Some(400), Action::Retry),
            (Some("ExpiredTokenException"), Some(400), Action::RefreshCredentials),
            (Some("UnrecognizedClientException"), Some(400), Action::RefreshCredentials),
            (Some("ResourceNotFoundException"), Some(400), Action::Recreate),
            (Some("AccessDeniedException"), Some(400), Action::Hold),
            (Some("AuthorizationError"), Some(403), Action::Hold),
            (None, Some(403), Action::Hold),
            (Some("LimitExceededException"), Some(400), Action::Hold),
            (Some("InvalidParameterException"), Some(400), Action::GiveUp),
            (Some("SerializationException"), Some(400), Action::GiveUp),
            (None, None, Action::GiveUp),
        ];
        for (code, status, action) in cases {
            assert_eq!(action_for(code, status), action, "{code:?} {status:?}");
        }
        assert!(!Action::GiveUp.may_succeed_later());
        assert!(Action::Hold.may_succeed_later());
    }
}
