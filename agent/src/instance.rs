//! Who this host is: the `InstanceId` dimension and the `{instance_id}` of stream names.
//!
//! The configured override, else IMDSv2 (token first, no IMDSv1 fallback) within a 1 s
//! budget, else the hostname. aws-config's IMDS client does not honour
//! `AWS_EC2_METADATA_DISABLED` (it still connects to 169.254.169.254), so the caller
//! checks that variable and says so here before any IMDS call.

use std::time::Duration;

use tracing::{debug, info, warn};

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
    /// As the environment's `AWS_EC2_METADATA_DISABLED` says.
    pub fn from_environment() -> Self {
        if klaxon_common::aws::imds_disabled() { Imds::Disabled } else { Imds::Ask }
    }
}

/// IMDS paths of the dimensions that can be appended.
const APPENDED: &[(&str, &str)] = &[
    ("InstanceType", "/latest/meta-data/instance-type"),
    ("ImageId", "/latest/meta-data/ami-id"),
    ("AutoScalingGroupName", "/latest/meta-data/tags/instance/aws:autoscaling:groupName"),
];

/// Who this host is: its instance id and the dimensions its metrics carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    pub instance_id: String,
    /// `InstanceId` first, then the appended dimensions IMDS knew.
    pub dimensions: Vec<(String, String)>,
}

/// The instance id (the override, else IMDSv2, else the hostname) and the `append`
/// dimensions IMDS answers for (others are left out, with a warning).
pub async fn resolve_host(
    override_id: Option<&str>,
    imds: Imds,
    append: &[String],
) -> HostIdentity {
    let client = (imds == Imds::Ask).then(|| {
        aws_config::imds::Client::builder()
            .max_attempts(1)
            .connect_timeout(IMDS_BUDGET)
            .read_timeout(IMDS_BUDGET)
            .build()
    });
    let ask = |path: &'static str| {
        let client = client.clone();
        async move {
            let client = client?;
            match tokio::time::timeout(IMDS_BUDGET, client.get(path)).await {
                Ok(Ok(value)) => Some(value.as_ref().trim().to_owned()),
                Ok(Err(error)) => {
                    debug!(message = "IMDSv2 did not answer.", path, %error);
                    None
                }
                Err(_) => {
                    debug!(message = "IMDSv2 took over a second.", path);
                    None
                }
            }
        }
    };
    let instance_id = match override_id {
        Some(id) => id.to_owned(),
        None => match ask("/latest/meta-data/instance-id").await {
            Some(id) => {
                info!(message = "Instance id from IMDSv2.", instance_id = %id);
                id
            }
            None => hostname(),
        },
    };
    let mut dimensions = vec![("InstanceId".to_owned(), instance_id.clone())];
    for name in append {
        let Some((_, path)) = APPENDED.iter().find(|(known, _)| known == name) else { continue };
        match ask(path).await {
            Some(value) => dimensions.push((name.clone(), value)),
            None => {
                warn!(message = "Dimension unavailable from IMDS; left out.", dimension = %name)
            }
        }
    }
    HostIdentity { instance_id, dimensions }
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

    #[tokio::test]
    async fn the_override_wins_and_disabled_imds_falls_back_to_the_hostname_at_once() {
        let host = resolve_host(Some("i-0abc"), Imds::Disabled, &[]).await;
        assert_eq!(host.dimensions, [("InstanceId".to_owned(), "i-0abc".to_owned())]);
        let started = std::time::Instant::now();
        let append = ["InstanceType".to_owned()];
        let host = resolve_host(None, Imds::Disabled, &append).await;
        assert_eq!(host.instance_id, hostname());
        assert_eq!(host.dimensions.len(), 1, "no IMDS, no appended dimension");
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
