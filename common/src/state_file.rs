//! State files: written so that a crash at any moment leaves the old or the new content,
//! whole (a temporary file, fsync, rename, fsync of the folder), and read back as JSON.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::de::DeserializeOwned;

/// The JSON state file at `path`, or None when there is none yet. Errors name the file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    let named = |kind, error: &dyn std::fmt::Display| {
        io::Error::new(kind, format!("{}: {error}", path.display()))
    };
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| named(io::ErrorKind::InvalidData, &error)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(named(error.kind(), &error)),
    }
}

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let folder = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(folder)?;
    let temp = path.with_extension("new");
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    File::open(folder)?.sync_all()
}
