//! The Python virtualenv the local AWS stack runs in.
//!
//! A fresh machine has only `python3`: the first stack to start creates a virtualenv
//! in the cache folder and installs the pinned `stack/requirements.txt` into it. Test
//! processes running in parallel share it; a file lock makes one of them build it while
//! the others wait. The venv remembers the requirements it was built from, so a change
//! of pins rebuilds it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::StackError;
use crate::cache::{home, io, lock};

/// The pinned Python packages of the stack, compiled in so the binaries work from anywhere.
const REQUIREMENTS: &str = include_str!("../stack/requirements.txt");

/// The Python interpreter of a ready virtualenv, building the venv first if needed.
pub fn ensure_python() -> Result<PathBuf, StackError> {
    let _lock = lock("venv")?;
    let home = home();
    let venv = home.join("venv");
    let stamp = venv.join("klaxon-requirements.txt");
    let python = venv.join("bin").join("python");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(REQUIREMENTS) {
        build_venv(&venv)?;
        fs::write(&stamp, REQUIREMENTS).map_err(io(format!("writing {}", stamp.display())))?;
    }
    Ok(python)
}

fn build_venv(venv: &Path) -> Result<(), StackError> {
    if venv.exists() {
        fs::remove_dir_all(venv).map_err(io(format!("removing the stale {}", venv.display())))?;
    }
    let system_python = std::env::var_os("KLAXON_PYTHON").unwrap_or_else(|| "python3".into());
    let has_venv = Command::new(&system_python).args(["-c", "import ensurepip, venv"]).output();
    match has_venv {
        Ok(output) if output.status.success() => {}
        Ok(_) => {
            return Err(StackError::Missing {
                what: "python3's venv module (Debian package python3-venv)".into(),
                install: "apt-get install python3-venv".into(),
            });
        }
        Err(_) => {
            return Err(StackError::Missing {
                what: format!("{} (Debian package python3)", system_python.to_string_lossy()),
                install: "apt-get install python3 python3-venv".into(),
            });
        }
    }
    eprintln!(
        "klaxon setup: creating the local AWS stack's Python virtualenv in {} and installing moto from PyPI (once per machine, about a minute)",
        venv.display()
    );
    run(Command::new(&system_python).arg("-m").arg("venv").arg(venv))?;
    let requirements = venv.join("requirements.txt");
    fs::write(&requirements, REQUIREMENTS)
        .map_err(io(format!("writing {}", requirements.display())))?;
    run(Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))
}

fn run(command: &mut Command) -> Result<(), StackError> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(io(format!("running {shown}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(StackError::Setup {
            command: shown,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}
