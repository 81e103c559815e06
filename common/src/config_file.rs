//! Reading a configuration or rule file: regular files only (never a FIFO, a device or
//! `/dev/zero`), at most [`MAX_CONFIG_BYTES`], parsed as TOML into a type that refuses
//! unknown keys (`#[serde(deny_unknown_fields)]`), every failure a located [`Problem`].
//! The semantic checks after parsing collect every problem at once.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::diagnostic::{Problem, Problems};

/// The largest configuration or rule file read (1 MiB: far above any real one).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The text of `file`, refused when it is not a regular file or is over the limit.
pub fn read_text(file: &Path) -> Result<String, Problem> {
    let refuse = |message: String| Problem::whole_file(file, message);
    let metadata =
        std::fs::metadata(file).map_err(|error| refuse(format!("cannot read: {error}")))?;
    if !metadata.is_file() {
        return Err(refuse(format!("not a regular file ({})", file_kind(&metadata))));
    }
    let opened = File::open(file).map_err(|error| refuse(format!("cannot read: {error}")))?;
    let mut bytes = Vec::new();
    opened
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| refuse(format!("cannot read: {error}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(refuse(format!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    String::from_utf8(bytes).map_err(|error| {
        refuse(format!(
            "not UTF-8 text (invalid byte at offset {})",
            error.utf8_error().valid_up_to()
        ))
    })
}

/// What kind of file this is, in words, for refusals.
pub fn file_kind(metadata: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// A humantime duration (`30s`, `5m`), for `#[serde(deserialize_with = "duration")]`; the
/// error names the bad value.
pub fn duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<std::time::Duration, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map_err(|error| serde::de::Error::custom(format!("invalid duration {text:?}: {error}")))
}

/// Parses `source`, the text of `file`, as `T`; a syntax or type error is located.
pub fn parse<T: DeserializeOwned>(file: &Path, source: &str) -> Result<T, Problem> {
    toml::from_str(source).map_err(|error| Problem::from_toml(file, source, &error))
}

/// Reads and parses `file`: its text (for locating later problems) and the value.
pub fn load<T: DeserializeOwned>(file: &Path) -> Result<(String, T), Problems> {
    let source = read_text(file).map_err(|problem| Problems(vec![problem]))?;
    let value = parse(file, &source).map_err(|problem| Problems(vec![problem]))?;
    Ok((source, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[allow(dead_code)]
        name: String,
    }

    #[test]
    fn devices_fifos_folders_and_huge_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("dir");
        let refused = |path: &Path| read_text(path).expect_err("refused").to_string();
        assert!(refused(Path::new("/dev/zero")).contains("character device"));
        assert!(refused(dir.path()).contains("a directory"));
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).expect("write");
        assert!(refused(&big).contains("larger than"));
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(made.success());
        assert!(refused(&fifo).contains("a FIFO"));
    }

    #[test]
    fn unknown_keys_and_bad_syntax_are_located() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("a.toml");
        std::fs::write(&file, "name = \"x\"\nnmae = \"y\"\n").expect("write");
        let problems = load::<Sample>(&file).expect_err("unknown key").to_string();
        assert!(problems.contains("a.toml:2:1: unknown field `nmae`"), "{problems}");
        std::fs::write(&file, "name = \"x\"\n").expect("write");
        assert!(load::<Sample>(&file).is_ok());
    }
}
