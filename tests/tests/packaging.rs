//! What packaging ships holds up: the systemd units pass `systemd-analyze verify` and
//! score an exposure of at most 2.0, and both daemons speak systemd's notify protocol
//! (READY, WATCHDOG pings, STOPPING) on a real notify socket.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use klaxon_tests::agent::workspace_binary;
use klaxon_tests::cargo_tools::{CARGO_DEB, CARGO_GENERATE_RPM};

const UNITS: [&str; 2] = ["klaxon-agent", "klaxon-aggregator"];

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

/// A root holding the daemons at /usr/bin, `/bin/kill`, our units, and a copy of the
/// system's units (targets the units name), as `systemd-analyze --root` needs.
fn unit_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    let copy = |from: &Path, to: &str| {
        let target = root.path().join(to);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from, &target).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    };
    for unit in UNITS {
        copy(&workspace_binary(unit), &format!("usr/bin/{unit}"));
        copy(
            &packaging().join(format!("systemd/{unit}.service")),
            &format!("etc/systemd/system/{unit}.service"),
        );
    }
    copy(Path::new("/bin/kill"), "bin/kill");
    std::fs::create_dir_all(root.path().join("usr/lib/systemd")).expect("mkdir");
    let status = Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system"])
        .arg(root.path().join("usr/lib/systemd/"))
        .status()
        .expect("cp");
    assert!(status.success());
    root
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let root = unit_root();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .args(UNITS.map(|u| format!("{u}.service")))
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let said = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}");
    assert!(!said.contains("klaxon"), "{said}");
}

#[test]
fn the_units_expose_at_most_2_0() {
    for unit in UNITS {
        let path = packaging().join(format!("systemd/{unit}.service"));
        let output = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&path)
            .output()
            .expect("systemd-analyze");
        let text = String::from_utf8_lossy(&output.stdout);
        let score: f64 = text
            .lines()
            .find_map(|line| line.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("no exposure in {text}"));
        assert!(score <= 2.0, "{unit}: exposure {score}\n{text}");
    }
}

/// Starts `binary` with `args` and a notify socket; returns what it said within
/// `window`, after SIGTERM.
fn notifications(binary: &str, args: &[&str], window: Duration) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let mut child = Command::new(workspace_binary(binary))
        .args(args)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut said = Vec::new();
    let mut buffer = [0u8; 4096];
    let started = Instant::now();
    let mut terminated = false;
    while started.elapsed() < window + Duration::from_secs(5) {
        if !terminated && started.elapsed() >= window {
            let pid = child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
            terminated = true;
        }
        if let Ok(n) = socket.recv(&mut buffer) {
            said.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
            if said.last().is_some_and(|s| s.contains("STOPPING=1")) {
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    said
}

#[test]
fn both_daemons_notify_ready_feed_the_watchdog_and_say_stopping() {
    let dir = tempfile::tempdir().expect("temp dir");
    let agent_config = dir.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "state_dir = \"{0}/agent\"\ninstance_id = \"i-notify\"\n[[logs]]\npath = \"{0}/*.log\"\ngroup = \"/test\"\n",
            dir.path().display()
        ),
    )
    .expect("agent config");
    std::fs::write(dir.path().join("rules.toml"), "").expect("rules");
    let aggregator_config = dir.path().join("aggregator.toml");
    std::fs::write(
        &aggregator_config,
        format!("rules = \"rules.toml\"\nstate_dir = \"{}/aggregator\"\n", dir.path().display()),
    )
    .expect("aggregator config");
    for (binary, config) in
        [("klaxon-agent", &agent_config), ("klaxon-aggregator", &aggregator_config)]
    {
        let config = config.display().to_string();
        let said = notifications(binary, &["--config", &config], Duration::from_secs(2));
        let ready = said.iter().position(|s| s.contains("READY=1"));
        assert!(ready.is_some(), "{binary}: {said:?}");
        let pings = said.iter().filter(|s| s.contains("WATCHDOG=1")).count();
        assert!(pings >= 4, "{binary}: {pings} watchdog pings in 2 s at 0.4 s: {said:?}");
        assert!(said.last().is_some_and(|s| s.contains("STOPPING=1")), "{binary}: {said:?}");
    }
}

/// Builds the package of `crate_name` with `tool` (`deb` or `generate-rpm`) from the
/// dev-profile binaries (what the package holds is checked here, not how fast it runs;
/// releases are built with `cargo deb` / `cargo generate-rpm` on release builds).
fn build_package(
    tool: &str,
    select: &str,
    crate_name: &str,
    binaries: &[&str],
    out: &Path,
) -> PathBuf {
    for binary in binaries {
        workspace_binary(binary);
    }
    let installed = if tool == "deb" { CARGO_DEB } else { CARGO_GENERATE_RPM };
    let bin = installed.bin_dir().unwrap_or_else(|e| panic!("{e}"));
    let path = std::env::join_paths(
        std::iter::once(bin)
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .expect("PATH");
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let mut command = Command::new(cargo);
    command.env("PATH", path);
    command.arg(tool).args(["-p", select, "--profile", "dev", "-o"]).arg(out);
    // Fast compression: these packages are checked, not shipped.
    if tool == "deb" {
        command.args(["--no-build", "--fast"]);
    } else {
        command.args(["--payload-compress", "none"]);
    }
    let output = command
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .unwrap_or_else(|e| panic!("cargo {tool}: {e}"));
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cargo {tool} -p {crate_name}: {said}");
    let extension = if tool == "deb" { "deb" } else { "rpm" };
    std::fs::read_dir(out)
        .expect("output")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|e| e == extension)
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(&format!("{crate_name}_"))
                        || n.starts_with(&format!("{crate_name}-0"))
                })
        })
        .unwrap_or_else(|| panic!("no .{extension} for {crate_name} in {}: {said}", out.display()))
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn run(program: &str, args: &[&str]) -> String {
    let output =
        Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?}: {said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    said
}

/// One package: its crate (as `cargo deb` and `cargo generate-rpm` select it), the
/// binaries it ships, and (path, mode) of what it must install.
struct Package {
    name: &'static str,
    rpm_select: &'static str,
    binaries: &'static [&'static str],
    files: &'static [(&'static str, u32)],
}

const PACKAGES: [Package; 2] = [
    Package {
        name: "klaxon-agent",
        rpm_select: "agent",
        binaries: &["klaxon-agent"],
        files: &[
            ("usr/bin/klaxon-agent", 0o755),
            ("etc/klaxon/agent.toml", 0o640),
            ("usr/lib/systemd/system/klaxon-agent.service", 0o644),
        ],
    },
    Package {
        name: "klaxon-aggregator",
        rpm_select: "aggregator",
        binaries: &["klaxon-aggregator", "klaxon"],
        files: &[
            ("usr/bin/klaxon-aggregator", 0o755),
            ("usr/bin/klaxon", 0o755),
            ("etc/klaxon/aggregator.toml", 0o640),
            ("etc/klaxon/rules/hosts.toml", 0o644),
            ("usr/lib/systemd/system/klaxon-aggregator.service", 0o644),
        ],
    },
];

#[test]
fn the_debs_install_into_a_throwaway_root_with_their_files_modes_and_scripts() {
    use std::os::unix::fs::MetadataExt;
    let out = tempfile::tempdir().expect("temp dir");
    let root = tempfile::tempdir().expect("temp dir");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
        std::fs::create_dir_all(root.path().join(dir)).expect("dpkg database");
    }
    std::fs::write(root.path().join("var/lib/dpkg/status"), "").expect("status");
    let root_arg = format!("--root={}", root.path().display());
    for Package { name, binaries, files, .. } in PACKAGES {
        let deb = build_package("deb", name, name, binaries, out.path());
        let deb = deb.display().to_string();
        // Unpacked, not configured: the maintainer scripts would run in the real system.
        run("dpkg", &[&root_arg, "--force-depends", "--unpack", &deb]);
        for (path, mode) in files {
            // Unpacked but not configured, a conffile waits as NAME.dpkg-new.
            let unpacked = if path.starts_with("etc/") {
                format!("{path}.dpkg-new")
            } else {
                (*path).to_owned()
            };
            let metadata = std::fs::metadata(root.path().join(&unpacked))
                .unwrap_or_else(|e| panic!("{name}: {unpacked}: {e}"));
            assert_eq!(
                metadata.mode() & 0o7777,
                *mode,
                "{name}: {path} mode {:o}",
                metadata.mode()
            );
            assert_eq!((metadata.uid(), metadata.gid()), (0, 0), "{name}: {path} owned by root");
        }
        let status = run("dpkg", &[&root_arg, "--status", name]);
        assert!(
            status.contains("Conffiles:\n /etc/klaxon/"),
            "{name}: config kept on upgrade:\n{status}"
        );
        assert!(status.contains("Depends:") && status.contains("libc6"), "{name}: {status}");
        let control = tempfile::tempdir().expect("temp dir");
        run("dpkg-deb", &["--control", &deb, &control.path().display().to_string()]);
        let postinst = std::fs::read_to_string(control.path().join("postinst")).expect("postinst");
        assert!(postinst.contains("useradd --system"), "{name}: the user is created:\n{postinst}");
        assert!(postinst.contains("chgrp klaxon"), "{name}: {postinst}");
        assert!(
            !postinst.contains("deb-systemd-invoke start"),
            "{name}: not started on install:\n{postinst}"
        );
        assert!(
            !postinst.contains("deb-systemd-helper enable klaxon")
                || postinst.contains("was-enabled"),
            "{name}: not enabled on install:\n{postinst}"
        );
    }
    // The default configurations are valid as shipped (the aggregator's rules from the package).
    for entry in walk(&root.path().join("etc/klaxon")) {
        if let Some(name) = entry.to_str().and_then(|p| p.strip_suffix(".dpkg-new")) {
            std::fs::rename(&entry, name).expect("rename");
        }
    }
    let agent = root.path().join("etc/klaxon/agent.toml").display().to_string();
    let output = Command::new(workspace_binary("klaxon-agent"))
        .args(["--config", &agent, "--check"])
        .output()
        .expect("check");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let aggregator = root.path().join("etc/klaxon/aggregator.toml");
    let text = std::fs::read_to_string(&aggregator)
        .expect("config")
        .replace("/etc/klaxon/rules", &root.path().join("etc/klaxon/rules").display().to_string());
    std::fs::write(&aggregator, text).expect("write");
    let output = Command::new(workspace_binary("klaxon-aggregator"))
        .args(["--config", &aggregator.display().to_string(), "--check"])
        .output()
        .expect("check");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
}

/// Read with the `rpm` crate: a Debian machine has no `rpm`.
#[test]
fn the_rpms_list_their_files_config_and_scripts() {
    let out = tempfile::tempdir().expect("temp dir");
    for Package { name, rpm_select, binaries, files } in PACKAGES {
        let path = build_package("generate-rpm", rpm_select, name, binaries, out.path());
        let package = rpm::Package::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let entries = package.metadata.get_file_entries().expect("file entries");
        for (file, mode) in files {
            let entry = entries
                .iter()
                .find(|entry| entry.path == Path::new("/").join(file))
                .unwrap_or_else(|| panic!("{name}: /{file} not in {entries:#?}"));
            assert_eq!(u32::from(entry.mode.permissions()), *mode, "{name}: /{file}");
            assert_eq!(entry.ownership.user, "root", "{name}: /{file}");
        }
        assert!(
            entries.iter().any(|entry| entry.path.starts_with("/etc/klaxon/")
                && entry.flags.contains(rpm::FileFlags::CONFIG | rpm::FileFlags::NOREPLACE)),
            "{name}: the configuration is %config(noreplace): {entries:#?}"
        );
        let postinstall =
            package.metadata.get_post_install_script().expect("postinstall scriptlet").script;
        assert!(postinstall.contains("useradd --system"), "{name}: {postinstall}");
        assert!(
            !postinstall.contains("systemctl start") && !postinstall.contains("systemctl enable"),
            "{name}: {postinstall}"
        );
        let requires = package.metadata.get_requires().expect("requires");
        assert!(requires.iter().any(|r| r.name == "shadow-utils"), "{name}: {requires:?}");
    }
}
