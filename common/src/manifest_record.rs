//! One manifest record: what the agent shipped in one acknowledged batch of a log
//! stream, chained to the record before it by hash. The agent writes these to
//! `<stream>.klaxon-manifest`; `klaxon logs verify` reads them back.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The record format this code writes.
pub const FORMAT_VERSION: u32 = 1;
/// The `prev` of a chain's first record starts with this, then names the stream and when.
pub const CHAIN_START: &str = "start:";
/// The suffix of the companion stream that holds a stream's manifest.
pub const MANIFEST_SUFFIX: &str = ".klaxon-manifest";

/// Where in one file a batch's lines came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRange {
    pub path: String,
    pub dev: u64,
    pub inode: u64,
    /// The identity of the file's first bytes (length and hash prefix), as `LEN:HEX`.
    pub fingerprint: String,
    /// The offset the batch started at, when the agent knew it (the last acknowledged).
    pub from: Option<u64>,
    /// The offset after the batch's last line.
    pub to: u64,
    /// The file's size when the agent last looked: what it has seen and not yet shipped
    /// lies between `to` and this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// Bytes of a file the agent could not ship, and says so: a gap marker event in the
/// stream, and this in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredGap {
    pub path: String,
    pub dev: u64,
    pub inode: u64,
    /// As in [`FileRange`].
    pub fingerprint: String,
    pub from: u64,
    /// The end of the lost bytes; none when it is not known (the file was not found).
    pub to: Option<u64>,
    pub reason: String,
}

/// One acknowledged batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub klaxon_manifest: u32,
    /// 0 for a chain's first record, then one more each batch.
    pub seq: u64,
    /// The previous record's `hash`, or `start:…` for the first.
    pub prev: String,
    pub files: Vec<FileRange>,
    /// Bytes of files the agent declares lost, with the gap marker this batch carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<DeclaredGap>,
    /// Events CloudWatch Logs accepted (what `sha256` covers).
    pub events: u64,
    /// Events of the batch CloudWatch Logs rejected (too old, too new); reported as gaps.
    pub rejected: u64,
    pub first_ts: i64,
    pub last_ts: i64,
    /// [`EventsDigest`] of the accepted events, in order.
    pub sha256: String,
    /// SHA-256 of this record serialized with `hash` empty.
    #[serde(default)]
    pub hash: String,
}

impl ManifestRecord {
    /// The hash this record should carry.
    pub fn compute_hash(&self) -> String {
        let unsealed = ManifestRecord { hash: String::new(), ..self.clone() };
        let bytes = serde_json::to_vec(&unsealed).unwrap_or_default();
        hex(&Sha256::digest(&bytes))
    }

    /// Sets `hash`.
    pub fn seal(mut self) -> Self {
        self.hash = self.compute_hash();
        self
    }
}

/// SHA-256 over events in order: for each, its timestamp (8 bytes, big-endian), its
/// message's length (8 bytes) and the message, so neither the text nor the time of an
/// event can change unseen, and no two sequences share an encoding.
#[derive(Debug, Clone, Default)]
pub struct EventsDigest {
    hash: Sha256,
    count: u64,
}

impl EventsDigest {
    pub fn add(&mut self, timestamp_ms: i64, message: &str) {
        self.hash.update(timestamp_ms.to_be_bytes());
        self.hash.update((message.len() as u64).to_be_bytes());
        self.hash.update(message.as_bytes());
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn finish(self) -> String {
        hex(&self.hash.finalize())
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ManifestRecord {
        let mut digest = EventsDigest::default();
        digest.add(1, "a");
        digest.add(2, "b");
        ManifestRecord {
            klaxon_manifest: FORMAT_VERSION,
            seq: 0,
            prev: format!("{CHAIN_START}/web/access/i-1"),
            files: vec![FileRange {
                path: "/var/log/a".into(),
                dev: 1,
                inode: 2,
                fingerprint: "256:00ff".into(),
                from: Some(0),
                to: 4,
                size: None,
            }],
            gaps: Vec::new(),
            events: digest.count(),
            rejected: 0,
            first_ts: 1,
            last_ts: 2,
            sha256: digest.finish(),
            hash: String::new(),
        }
        .seal()
    }

    #[test]
    fn a_sealed_record_survives_json_and_any_change_breaks_its_hash() {
        let sealed = record();
        let text = serde_json::to_string(&sealed).expect("json");
        // Records written before sizes and gaps existed serialize, and so hash, the same.
        assert!(!text.contains("\"size\"") && !text.contains("\"gaps\""), "{text}");
        let back: ManifestRecord = serde_json::from_str(&text).expect("parse");
        assert_eq!(back.compute_hash(), back.hash);
        let altered = ManifestRecord { events: 3, ..back };
        assert_ne!(altered.compute_hash(), altered.hash);
    }

    #[test]
    fn the_digest_sees_text_time_and_boundaries() {
        let digest = |events: &[(i64, &str)]| {
            let mut digest = EventsDigest::default();
            for (ts, message) in events {
                digest.add(*ts, message);
            }
            digest.finish()
        };
        let base = digest(&[(1, "ab"), (2, "c")]);
        assert_ne!(base, digest(&[(1, "a"), (2, "bc")]));
        assert_ne!(base, digest(&[(1, "ab"), (3, "c")]));
        assert_ne!(base, digest(&[(1, "ab"), (2, "C")]));
        assert_eq!(base, digest(&[(1, "ab"), (2, "c")]));
    }
}
