//! Who this host is: the `InstanceId` dimension and the `{instance_id}` of stream names.
//!
//! The configured override, else IMDSv2 (token first, no IMDSv1 fallback) within a 1 s
//! budget, else the hostname. aws-config's IMDS client does not honour
//! `AWS_EC2_METADATA_DISABLED` (it still connects to 169.254.169.254), so the caller
//! checks that variable and says so here before any IMDS call.

use std::time::Duration;

use tracing::{debug, info};

/// The whole time start-up may spend asking IMDS.
const IMDS_BUDGET: Duration = Duration::from_secs(1);

/// How the instance id is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imds {
    /// Ask the instance metadata service.
    Ask,
    /// `AWS_EC2_METADATA_DISABLED` is set: never call it.
    Disabled,
}

impl Imds {
    /// From the value of `AWS_EC2_METADATA_DISABLED` (true, case-insensitive, disables).
    pub fn from_disabled_variable(value: Option<&str>) -> Self {
        match value {
            Some(value) if value.trim().eq_ignore_ascii_case("true") => Imds::Disabled,
            _ => Imds::Ask,
        }
    }
}

/// The instance id: the override, else IMDSv2, else the hostname.
pub async fn resolve_instance_id(override_id: Option<&str>, imds: Imds) -> String {
    if let Some(id) = override_id {
        return id.to_owned();
    }
    if imds == Imds::Ask {
        let client = aws_config::imds::Client::builder()
            .max_attempts(1)
            .connect_timeout(IMDS_BUDGET)
            .read_timeout(IMDS_BUDGET)
            .build();
        let asked =
            tokio::time::timeout(IMDS_BUDGET, client.get("/latest/meta-data/instance-id")).await;
        match asked {
            Ok(Ok(id)) => {
                let id = id.as_ref().trim().to_owned();
                info!(message = "Instance id from IMDSv2.", instance_id = %id);
                return id;
            }
            Ok(Err(error)) => {
                debug!(message = "IMDSv2 did not answer; using the hostname.", %error)
            }
            Err(_) => debug!(message = "IMDSv2 took over a second; using the hostname."),
        }
    }
    hostname()
}

/// This host's name (Linux: /proc/sys/kernel/hostname).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_true_disables_imds() {
        assert_eq!(Imds::from_disabled_variable(Some("TRUE")), Imds::Disabled);
        assert_eq!(Imds::from_disabled_variable(Some("false")), Imds::Ask);
        assert_eq!(Imds::from_disabled_variable(None), Imds::Ask);
    }

    #[tokio::test]
    async fn the_override_wins_and_disabled_imds_falls_back_to_the_hostname_at_once() {
        assert_eq!(resolve_instance_id(Some("i-0abc"), Imds::Ask).await, "i-0abc");
        let started = std::time::Instant::now();
        assert_eq!(resolve_instance_id(None, Imds::Disabled).await, hostname());
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
