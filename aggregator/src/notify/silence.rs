//! Silences: operator-made, time-bound mutes stored in `state_dir/silences.json`, written
//! by `klaxon silence` and re-read by the running aggregator when the file changes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::matcher::{MatcherError, Matchers};
use crate::engine::evaluate::Labels;
use crate::engine::state::Seconds;
use klaxon_common::state_file::{read_json, write_atomically};

/// One silence as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    /// As given: `label=value` or `label=~regex`.
    pub matchers: Vec<String>,
    pub starts_at: Seconds,
    pub ends_at: Seconds,
    pub author: String,
    pub comment: String,
}

impl Silence {
    pub fn is_active(&self, now: Seconds) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

/// The silences file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SilenceFile {
    silences: Vec<Silence>,
}

/// The silences of one aggregator, compiled for matching.
#[derive(Debug, Default)]
pub struct Silences {
    entries: Vec<(Silence, Matchers)>,
}

/// Why the silences file or a new silence is refused.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error("{path}: silence {id}: {source}")]
    Stored { path: PathBuf, id: String, source: MatcherError },
    #[error(transparent)]
    Matcher(#[from] MatcherError),
}

/// Where the silences of `state_dir` are kept.
pub fn silences_path(state_dir: &Path) -> PathBuf {
    state_dir.join("silences.json")
}

impl Silences {
    /// Reads the file; a missing file is no silences.
    pub fn load(path: &Path) -> Result<Silences, SilenceError> {
        let file: SilenceFile = read_json(path)?.unwrap_or_default();
        let entries = file
            .silences
            .into_iter()
            .map(|silence| {
                let matchers = Matchers::parse(&silence.matchers).map_err(|source| {
                    SilenceError::Stored { path: path.to_owned(), id: silence.id.clone(), source }
                })?;
                Ok((silence, matchers))
            })
            .collect::<Result<_, SilenceError>>()?;
        Ok(Silences { entries })
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let file = SilenceFile { silences: self.list().cloned().collect() };
        write_atomically(path, &serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?)
    }

    /// Adds a silence from `now` for `duration_secs`; returns its id.
    pub fn add(
        &mut self,
        matchers: &[String],
        now: Seconds,
        duration_secs: Seconds,
        author: &str,
        comment: &str,
    ) -> Result<String, MatcherError> {
        let compiled = Matchers::parse(matchers)?;
        // Ids are short enough to type and unique within the file.
        let id = loop {
            let candidate = format!("{:08x}", fastrand::u32(..));
            if !self.entries.iter().any(|(silence, _)| silence.id == candidate) {
                break candidate;
            }
        };
        let silence = Silence {
            id: id.clone(),
            matchers: matchers.to_vec(),
            starts_at: now,
            ends_at: now + duration_secs,
            author: author.to_owned(),
            comment: comment.to_owned(),
        };
        self.entries.push((silence, compiled));
        Ok(id)
    }

    /// Ends the silence `id` at `now`; false when there is none by that id.
    pub fn expire(&mut self, id: &str, now: Seconds) -> bool {
        match self.entries.iter_mut().find(|(silence, _)| silence.id == id) {
            Some((silence, _)) => {
                silence.ends_at = silence.ends_at.min(now);
                true
            }
            None => false,
        }
    }

    pub fn list(&self) -> impl Iterator<Item = &Silence> {
        self.entries.iter().map(|(silence, _)| silence)
    }

    /// The id of an active silence that matches `labels`, if any.
    pub fn silencing(&self, labels: &Labels, now: Seconds) -> Option<&str> {
        self.entries
            .iter()
            .find(|(silence, matchers)| silence.is_active(now) && matchers.matches(labels))
            .map(|(silence, _)| silence.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silences_round_trip_and_expire() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = silences_path(dir.path());
        let mut silences = Silences::load(&path).expect("no file is no silences");
        let id = silences
            .add(&["InstanceId=~i-0[12]".to_owned()], 1000, 7200, "alice", "patching")
            .expect("valid");
        silences.save(&path).expect("save");

        let mut loaded = Silences::load(&path).expect("load");
        let host = |id: &str| Labels::from([("InstanceId".to_owned(), id.to_owned())]);
        assert_eq!(loaded.silencing(&host("i-01"), 1000), Some(id.as_str()));
        assert_eq!(loaded.silencing(&host("i-03"), 1000), None);
        assert_eq!(loaded.silencing(&host("i-01"), 999), None, "not yet started");
        assert_eq!(loaded.silencing(&host("i-01"), 8200), None, "ended");
        assert!(loaded.expire(&id, 2000));
        assert!(!loaded.expire("nope", 2000));
        assert_eq!(loaded.silencing(&host("i-01"), 2000), None);
        let listed: Vec<_> = loaded.list().collect();
        assert_eq!((listed[0].author.as_str(), listed[0].ends_at), ("alice", 2000));
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = silences_path(dir.path());
        std::fs::write(&path, "{ not json").expect("write");
        let error = Silences::load(&path).expect_err("corrupt");
        assert!(error.to_string().contains("silences.json"), "{error}");
    }
}
