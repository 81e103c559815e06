//! The agent's side of log manifests: per stream, the head of its hash chain and the
//! records not yet shipped to `<stream>.klaxon-manifest`, kept in
//! `state_dir/manifests.json`. A record is saved here before the checkpoints move past
//! its batch, so no acknowledged batch is ever without its record.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::destination::Destination;
use klaxon_common::manifest_record::{
    CHAIN_START, DeclaredGap, EventsDigest, FORMAT_VERSION, FileRange, MANIFEST_SUFFIX,
    ManifestRecord,
};
use klaxon_common::state_file::{read_json, write_atomically};

const FILE_NAME: &str = "manifests.json";

/// One stream's chain.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Chain {
    next_seq: u64,
    last_hash: Option<String>,
    /// Sealed records waiting to be shipped, oldest first.
    pending: Vec<ManifestRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "version")]
enum StateFile {
    #[serde(rename = "1")]
    V1 { chains: Vec<(String, String, Chain)> },
}

/// What one acknowledged batch was.
#[derive(Debug)]
pub struct BatchSummary {
    pub files: Vec<FileRange>,
    pub gaps: Vec<DeclaredGap>,
    pub digest: EventsDigest,
    pub rejected: u64,
    pub first_ts: i64,
    pub last_ts: i64,
}

/// Every stream's chain, and where it is saved.
#[derive(Debug)]
pub struct Manifests {
    path: PathBuf,
    chains: BTreeMap<(String, String), Chain>,
}

/// The stream that holds `destination`'s manifest.
pub fn manifest_destination(destination: &Destination) -> Destination {
    Destination {
        group: destination.group.clone(),
        stream: format!("{}{MANIFEST_SUFFIX}", destination.stream),
        retention_days: destination.retention_days,
    }
}

impl Manifests {
    pub fn load(state_dir: &Path) -> io::Result<Self> {
        let path = state_dir.join(FILE_NAME);
        let chains = match read_json(&path)? {
            Some(StateFile::V1 { chains }) => {
                chains.into_iter().map(|(group, stream, chain)| ((group, stream), chain)).collect()
            }
            None => BTreeMap::new(),
        };
        Ok(Manifests { path, chains })
    }

    pub fn save(&self) -> io::Result<()> {
        let chains = self
            .chains
            .iter()
            .map(|((group, stream), chain)| (group.clone(), stream.clone(), chain.clone()))
            .collect();
        let bytes = serde_json::to_vec(&StateFile::V1 { chains }).map_err(io::Error::other)?;
        write_atomically(&self.path, &bytes)
    }

    /// Seals the record of one acknowledged batch into the stream's chain; `started`
    /// names when a new chain starts (the first record of a stream).
    pub fn append(&mut self, destination: &Destination, batch: BatchSummary, started: &str) {
        let key = (destination.group.clone(), destination.stream.clone());
        let chain = self.chains.entry(key).or_default();
        let prev = chain.last_hash.clone().unwrap_or_else(|| {
            format!("{CHAIN_START}{}/{} {started}", destination.group, destination.stream)
        });
        let record = ManifestRecord {
            klaxon_manifest: FORMAT_VERSION,
            seq: chain.next_seq,
            prev,
            files: batch.files,
            gaps: batch.gaps,
            events: batch.digest.count(),
            rejected: batch.rejected,
            first_ts: batch.first_ts,
            last_ts: batch.last_ts,
            sha256: batch.digest.finish(),
            hash: String::new(),
        }
        .seal();
        chain.next_seq += 1;
        chain.last_hash = Some(record.hash.clone());
        chain.pending.push(record);
    }

    /// The records of `destination` waiting to be shipped, oldest first.
    pub fn pending(&self, destination: &Destination) -> &[ManifestRecord] {
        self.chains
            .get(&(destination.group.clone(), destination.stream.clone()))
            .map_or(&[], |chain| chain.pending.as_slice())
    }

    /// The streams (group, stream) with records waiting to be shipped.
    pub fn waiting_streams(&self) -> Vec<(String, String)> {
        let waiting = self.chains.iter().filter(|(_, chain)| !chain.pending.is_empty());
        waiting.map(|(key, _)| key.clone()).collect()
    }

    /// The records up to `seq` are in CloudWatch Logs.
    pub fn shipped(&mut self, destination: &Destination, seq: u64) {
        if let Some(chain) =
            self.chains.get_mut(&(destination.group.clone(), destination.stream.clone()))
        {
            chain.pending.retain(|record| record.seq > seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(message: &str) -> BatchSummary {
        let mut digest = EventsDigest::default();
        digest.add(1, message);
        BatchSummary {
            files: Vec::new(),
            gaps: Vec::new(),
            digest,
            rejected: 0,
            first_ts: 1,
            last_ts: 1,
        }
    }

    #[test]
    fn records_chain_survive_a_restart_and_leave_once_shipped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let web = Destination { group: "/web".into(), stream: "i-1".into(), retention_days: None };
        let mut manifests = Manifests::load(dir.path()).expect("empty");
        manifests.append(&web, batch("a"), "2026-11-26T00:00:00Z");
        manifests.append(&web, batch("b"), "2026-11-26T00:00:00Z");
        manifests.save().expect("save");

        let mut again = Manifests::load(dir.path()).expect("load");
        let pending = again.pending(&web).to_vec();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].prev, "start:/web/i-1 2026-11-26T00:00:00Z");
        assert_eq!(pending[1].prev, pending[0].hash);
        assert_eq!(pending[1].compute_hash(), pending[1].hash);
        assert_eq!(again.waiting_streams(), [("/web".to_owned(), "i-1".to_owned())]);
        again.shipped(&web, 0);
        again.append(&web, batch("c"), "later");
        let pending = again.pending(&web);
        assert_eq!(pending.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(pending[1].prev, pending[0].hash, "the chain goes on");
        assert_eq!(manifest_destination(&web).stream, "i-1.klaxon-manifest");
    }
}
