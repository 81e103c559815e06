//! Where a log source's events go: a stream in a group. The tail server routes by it,
//! the shippers send to it and the manifests are kept per destination.

/// A log stream in a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Destination {
    pub group: String,
    pub stream: String,
    /// Set when the agent creates the group.
    pub retention_days: Option<u32>,
}
