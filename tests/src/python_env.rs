//! The Python virtualenv the local AWS stack runs in.
//!
//! A fresh machine has only `python3`: the first stack to start creates a virtualenv
//! in the cache folder and installs the pinned `stack/requirements.txt` into it. Test
//! processes running in parallel share it; a file lock makes one of them build it while
//! the others wait. The venv remembers the requirements it was built from, so a change
//! of pins rebuilds it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::StackError;

/// The pinned Python packages of the stack, compiled in so the binaries work from anywhere.
const REQUIREMENTS: &str = include_str!("../stack/requirements.txt");

/// The folder holding the venv: `$KLAXON_STACK_HOME`, else `$XDG_CACHE_HOME/klaxon`,
/// else `~/.cache/klaxon`, else the system temporary folder.
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

/// The Python interpreter of a ready virtualenv, building the venv first if needed.
pub fn ensure_python() -> Result<PathBuf, StackError> {
    let home = home();
    fs::create_dir_all(&home).map_err(|source| StackError::Io {
        what: format!("creating {}", home.display()),
        source,
    })?;
    let lock_path = home.join("venv.lock");
    let lock = File::create(&lock_path).map_err(|source| StackError::Io {
        what: format!("opening {}", lock_path.display()),
        source,
    })?;
    lock.lock().map_err(|source| StackError::Io {
        what: format!("locking {}", lock_path.display()),
        source,
    })?;
    let venv = home.join("venv");
    let stamp = venv.join("klaxon-requirements.txt");
    let python = venv.join("bin").join("python");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(REQUIREMENTS) {
        build_venv(&venv)?;
        fs::write(&stamp, REQUIREMENTS).map_err(|source| StackError::Io {
            what: format!("writing {}", stamp.display()),
            source,
        })?;
    }
    Ok(python)
}

fn build_venv(venv: &Path) -> Result<(), StackError> {
    if venv.exists() {
        fs::remove_dir_all(venv).map_err(|source| StackError::Io {
            what: format!("removing the stale {}", venv.display()),
            source,
        })?;
    }
    let system_python = std::env::var_os("KLAXON_PYTHON").unwrap_or_else(|| "python3".into());
    run(Command::new(&system_python).arg("-m").arg("venv").arg(venv))?;
    let requirements = venv.join("requirements.txt");
    fs::write(&requirements, REQUIREMENTS).map_err(|source| StackError::Io {
        what: format!("writing {}", requirements.display()),
        source,
    })?;
    run(Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))
}

fn run(command: &mut Command) -> Result<(), StackError> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|source| StackError::Io { what: format!("running {shown}"), source })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(StackError::Setup {
            command: shown,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}
