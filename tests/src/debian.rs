//! Debian programs the tests run as oracles (the real `logrotate`, …), fetched once per
//! machine with `apt-get download` and unpacked with `dpkg-deb -x` into the cache
//! folder: nothing is installed on the system, and a fresh Debian machine needs no step
//! by hand. A file lock per program makes parallel tests wait for the one fetching it.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::StackError;
use crate::cache::{home, io, lock};

/// A program from Debian packages: the packages to unpack (the program's and the
/// libraries a base system lacks) and the program's path inside them.
#[derive(Debug, Clone, Copy)]
pub struct DebianProgram {
    pub packages: &'static [&'static str],
    pub binary: &'static str,
}

/// logrotate, as Debian ships it (with libpopt0, which a base system lacks).
pub const LOGROTATE: DebianProgram =
    DebianProgram { packages: &["logrotate", "libpopt0"], binary: "usr/sbin/logrotate" };

/// Where unpacked packages keep their shared libraries.
const LIBRARY_DIR: &str = "usr/lib/x86_64-linux-gnu";

impl DebianProgram {
    /// A command running the program, fetched and unpacked first if needed.
    pub fn command(&self) -> Result<Command, StackError> {
        let root = self.ensure()?;
        let mut command = Command::new(root.join(self.binary));
        command.env("LD_LIBRARY_PATH", root.join(LIBRARY_DIR));
        Ok(command)
    }

    /// The folder the packages are unpacked in.
    fn ensure(&self) -> Result<PathBuf, StackError> {
        let home = home();
        let name = self.packages.join("+");
        let root = home.join("debian").join(&name);
        fs::create_dir_all(&root).map_err(io(format!("creating {}", root.display())))?;
        let _lock = lock(&format!("debian-{name}"))?;
        if root.join(self.binary).is_file() {
            return Ok(root);
        }
        eprintln!(
            "klaxon setup: fetching the Debian packages {} (once per machine)",
            self.packages.join(", ")
        );
        let downloads =
            tempfile::tempdir_in(&home).map_err(io("creating a download folder".into()))?;
        let download = |update_first: bool| {
            if update_first {
                let _ = Command::new("apt-get").args(["update", "-qq"]).status();
            }
            Command::new("apt-get")
                .arg("download")
                .args(self.packages)
                .current_dir(downloads.path())
                .output()
        };
        let mut output = download(false).map_err(io("running apt-get download".into()))?;
        if !output.status.success() {
            // The package lists may be missing or stale on a fresh machine.
            output = download(true).map_err(io("running apt-get download".into()))?;
        }
        if !output.status.success() {
            return Err(StackError::Setup {
                command: format!(
                    "apt-get download {} (on Debian; as root, `apt-get update` first if the lists are missing)",
                    self.packages.join(" ")
                ),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let entries = fs::read_dir(downloads.path()).map_err(io("reading the downloads".into()))?;
        for deb in entries.flatten().map(|entry| entry.path()) {
            let unpacked = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(&root)
                .output()
                .map_err(io("running dpkg-deb (Debian package dpkg)".into()))?;
            if !unpacked.status.success() {
                return Err(StackError::Setup {
                    command: format!("dpkg-deb -x {} {}", deb.display(), root.display()),
                    stderr: String::from_utf8_lossy(&unpacked.stderr).into_owned(),
                });
            }
        }
        Ok(root)
    }
}
