//! Writing state files so that a crash at any moment leaves the old or the new content,
//! whole: a temporary file, fsync, rename, fsync of the folder. The aggregator compiles
//! this file too.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

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
