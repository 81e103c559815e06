//! The cache folder the tests prepare their prerequisites in, once per machine (the
//! stack's virtualenv, Debian programs, cargo subcommands), and the file locks that make
//! parallel test processes wait for the one preparing an item.

use std::fs::{self, File};
use std::path::PathBuf;

use crate::StackError;

/// The cache folder: `$KLAXON_STACK_HOME`, else `$XDG_CACHE_HOME/klaxon`, else
/// `~/.cache/klaxon`, else the system temporary folder.
pub fn home() -> PathBuf {
    if let Some(dir) = std::env::var_os("KLAXON_STACK_HOME") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("klaxon")
}

/// An error naming what was being done.
pub fn io(what: String) -> impl FnOnce(std::io::Error) -> StackError {
    move |source| StackError::Io { what, source }
}

/// Holds the lock of cache item `name` (released when dropped), creating the folder.
pub fn lock(name: &str) -> Result<File, StackError> {
    let home = home();
    fs::create_dir_all(&home).map_err(io(format!("creating {}", home.display())))?;
    let path = home.join(format!("{name}.lock"));
    let lock = File::create(&path).map_err(io(format!("opening {}", path.display())))?;
    lock.lock().map_err(io(format!("locking {}", path.display())))?;
    Ok(lock)
}
