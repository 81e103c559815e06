//! Cargo subcommands the packaging tests build packages with (`cargo deb`, `cargo
//! generate-rpm`), installed once per machine with `cargo install --locked` at a pinned
//! version into the cache folder: nothing goes into `~/.cargo`, and a fresh machine
//! needs no step by hand.

use std::path::PathBuf;
use std::process::Command;

use crate::StackError;
use crate::cache::{home, io, lock};

/// A cargo subcommand at a pinned version.
#[derive(Debug, Clone, Copy)]
pub struct CargoTool {
    pub name: &'static str,
    pub version: &'static str,
}

pub const CARGO_DEB: CargoTool = CargoTool { name: "cargo-deb", version: "3.8.0" };
pub const CARGO_GENERATE_RPM: CargoTool =
    CargoTool { name: "cargo-generate-rpm", version: "0.21.1" };

impl CargoTool {
    /// The folder holding the tool's binary, to put first on `PATH`; the tool is
    /// installed first if it is not there yet.
    pub fn bin_dir(&self) -> Result<PathBuf, StackError> {
        let pinned = format!("{}-{}", self.name, self.version);
        let _lock = lock(&format!("cargo-tool-{pinned}"))?;
        let root = home().join("cargo-tools").join(&pinned);
        let bin = root.join("bin");
        if bin.join(self.name).is_file() {
            return Ok(bin);
        }
        eprintln!(
            "klaxon setup: installing {} {} into {} (once per machine, a few minutes)",
            self.name,
            self.version,
            root.display()
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .args(["install", "--locked", "--quiet", "--root"])
            .arg(&root)
            .arg(format!("{}@{}", self.name, self.version))
            .env_remove("CARGO_TARGET_DIR");
        let output = command.output().map_err(io(format!("running {command:?}")))?;
        if !output.status.success() {
            return Err(StackError::Setup {
                command: format!("{command:?} (needs crates.io)"),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(bin)
    }
}
