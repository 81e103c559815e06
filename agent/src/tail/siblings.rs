//! Finding a file we knew among its rotated siblings, after rotations the agent did not
//! see (it was stopped, or the file was closed) and after a copytruncate.
//!
//! logrotate and its kin rename `access.log` to `access.log.1`, `access.log-20261202`
//! or `access.log.1.gz`, compress the older ones (`delaycompress` waits one round), and
//! with `copytruncate` copy the file before truncating it. The siblings of a path are
//! the files in its folder whose name starts with the path's base name (its name with
//! rotation suffixes taken off). A sibling is the file we knew when it starts with the
//! bytes of the fingerprint we kept: for a plain file, and (`same_inode`) on the same
//! device and inode too; for a `.gz`, the decompressed head must match, and the file is
//! decompressed into an unlinked temporary file so it can be read like any other.

use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use flate2::read::MultiGzDecoder;

use super::identity::{FileKey, Fingerprint};

/// First bytes needed to know a compressed file for one we knew.
const MIN_IDENTIFYING_BYTES: usize = 64;

/// A sibling found to be the file we knew.
#[derive(Debug)]
pub struct Found {
    /// Where it is now (the `.gz` for a compressed one).
    pub path: PathBuf,
    /// Open for reading; a compressed sibling's decompressed content.
    pub handle: File,
    /// It was found compressed.
    pub compressed: bool,
}

/// Which siblings qualify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The same file, renamed (and maybe compressed): the same inode for a plain file.
    Renamed,
    /// The same inode, renamed, whatever it holds now (its content may have been
    /// replaced): plain files only.
    Inode,
    /// A copy of it (copytruncate): any other file that starts with its bytes, and
    /// (`born_after`, for a file whose bytes were never read) a plain file created
    /// after that time (a file renamed by a rotation was created before).
    Copied { born_after: Option<SystemTime> },
}

/// The name a rotated file was rotated from: `access.log.2.gz`, `access.log.1` and
/// `access.log-20261202` all come from `access.log`.
pub fn base_name(name: &str) -> &str {
    let mut base = name.strip_suffix(".gz").unwrap_or(name);
    loop {
        let Some(at) = base.rfind(['.', '-', '_']) else { return base };
        let suffix = &base[at + 1..];
        if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
            return base;
        }
        base = &base[..at];
    }
}

/// The rotated siblings of `path`, newest rotation first (by modification time), the
/// path itself left out.
pub fn siblings(path: &Path) -> Vec<PathBuf> {
    let (Some(folder), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Vec::new();
    };
    let base = base_name(name);
    let Ok(entries) = fs::read_dir(folder) else { return Vec::new() };
    let mut found: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|entry| {
            entry.file_name().to_str().is_some_and(|n| n != name && n.starts_with(base))
        })
        .filter_map(|entry| {
            let metadata = entry.metadata().ok().filter(fs::Metadata::is_file)?;
            Some((metadata.modified().ok()?, entry.path()))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    found.into_iter().map(|(_, path)| path).collect()
}

/// The sibling of `path` that is the file (`key`, `fingerprint`) we knew, if any, with
/// `temp_dir` for decompressing a `.gz` one.
pub fn find(
    path: &Path,
    key: FileKey,
    fingerprint: Fingerprint,
    wanted: Match,
    temp_dir: &Path,
) -> Option<Found> {
    siblings(path).into_iter().find_map(|candidate| {
        let compressed = candidate.extension().is_some_and(|e| e == "gz");
        // A copy told by its time is the plain file logrotate has just made (a
        // compressed sibling made as recently is an older rotation, moved on); an inode
        // is a plain file's.
        let by_time = matches!(wanted, Match::Copied { born_after: Some(_) });
        if compressed && (by_time || wanted == Match::Inode) {
            return None;
        }
        let handle = if compressed {
            // A compressed file has a new inode: only its first bytes can name it, and a
            // few bytes name many files (prefer a gap, and the file shipped again whole
            // as unseen, to shipping another file's lines as this one's).
            if (fingerprint.len as usize) < MIN_IDENTIFYING_BYTES {
                return None;
            }
            decompressed_if_it_starts_with(&candidate, fingerprint, temp_dir).ok()??
        } else {
            let handle = File::open(&candidate).ok()?;
            let metadata = handle.metadata().ok()?;
            let same_inode = FileKey::of(&metadata) == key;
            let qualifies = match wanted {
                Match::Renamed => same_inode,
                Match::Inode => {
                    return same_inode.then_some(Found { path: candidate, handle, compressed });
                }
                Match::Copied { born_after } => {
                    let born = || metadata.created().ok();
                    !same_inode && born_after.is_none_or(|after| born().is_some_and(|b| b > after))
                }
            };
            (qualifies && fingerprint.matches(&handle).ok()?).then_some(handle)?
        };
        Some(Found { path: candidate, handle, compressed })
    })
}

/// The decompressed content of `gz` in an unlinked temporary file, when its first
/// bytes are those `fingerprint` was taken of.
fn decompressed_if_it_starts_with(
    gz: &Path,
    fingerprint: Fingerprint,
    temp_dir: &Path,
) -> io::Result<Option<File>> {
    let mut head = Vec::with_capacity(fingerprint.len as usize);
    MultiGzDecoder::new(File::open(gz)?).take(u64::from(fingerprint.len)).read_to_end(&mut head)?;
    if !fingerprint.is_of(&head) {
        return Ok(None);
    }
    decompressed(gz, temp_dir).map(Some)
}

/// `gz` decompressed into an unlinked temporary file in `temp_dir`.
fn decompressed(gz: &Path, temp_dir: &Path) -> io::Result<File> {
    fs::create_dir_all(temp_dir)?;
    let mut out = tempfile::tempfile_in(temp_dir)?;
    io::copy(&mut MultiGzDecoder::new(File::open(gz)?), &mut out)?;
    out.rewind()?;
    Ok(out)
}

/// A sibling opened for reading: a `.gz` one decompressed (into `temp_dir`).
pub fn open(path: &Path, temp_dir: &Path) -> io::Result<File> {
    if path.extension().is_some_and(|e| e == "gz") {
        decompressed(path, temp_dir)
    } else {
        File::open(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotation_suffixes_come_off_the_base_name() {
        assert_eq!(base_name("access.log"), "access.log");
        assert_eq!(base_name("access.log.1"), "access.log");
        assert_eq!(base_name("access.log.2.gz"), "access.log");
        assert_eq!(base_name("access.log-20261202"), "access.log");
        assert_eq!(base_name("access.log-20261202.gz"), "access.log");
        assert_eq!(base_name("app_3.log"), "app_3.log");
    }

    fn write(path: &Path, text: &str) {
        File::create(path).and_then(|mut f| f.write_all(text.as_bytes())).expect("write");
    }

    fn identity(path: &Path) -> (FileKey, Fingerprint) {
        let handle = File::open(path).expect("open");
        (FileKey::of(&handle.metadata().expect("stat")), Fingerprint::read(&handle).expect("fp"))
    }

    const LINES: &str = "2026-12-03T11:00:00Z GET /item/1 HTTP/1.1 200\n2026-12-03T11:00:01Z GET /item/2 HTTP/1.1 200\n";

    #[test]
    fn a_renamed_file_is_found_plain_or_compressed_and_a_copy_only_as_a_copy() {
        let dir = tempfile::tempdir().expect("dir");
        let temp = dir.path().join("tmp");
        let log = dir.path().join("access.log");
        write(&log, LINES);
        let (key, fingerprint) = identity(&log);
        fs::rename(&log, dir.path().join("access.log.1")).expect("rotate");
        write(&log, "a new file\n");
        write(&dir.path().join("error.log.1"), LINES);

        let found = find(&log, key, fingerprint, Match::Renamed, &temp).expect("renamed");
        assert_eq!(found.path, dir.path().join("access.log.1"));
        assert!(!found.compressed);
        assert!(find(&log, key, fingerprint, Match::Copied { born_after: None }, &temp).is_none());

        // Compressed by the next rotation: found through its decompressed head.
        let plain = fs::read(dir.path().join("access.log.1")).expect("read");
        let gz = File::create(dir.path().join("access.log.2.gz")).expect("gz");
        let mut encoder = flate2::write::GzEncoder::new(gz, flate2::Compression::fast());
        encoder.write_all(&plain).expect("compress");
        encoder.finish().expect("finish");
        fs::remove_file(dir.path().join("access.log.1")).expect("remove");
        let found = find(&log, key, fingerprint, Match::Renamed, &temp).expect("compressed");
        assert!(found.compressed);
        let mut text = String::new();
        let mut handle = found.handle;
        handle.read_to_string(&mut text).expect("read");
        assert_eq!(text, LINES);
        assert_eq!(fs::read_dir(&temp).expect("temp").count(), 0, "the temp file is unlinked");
        let short = Fingerprint { len: 20, ..fingerprint };
        assert!(
            find(&log, key, short, Match::Renamed, &temp).is_none(),
            "a few first bytes do not name a compressed file"
        );

        // copytruncate: the copy has another inode and the same first bytes.
        let copied = dir.path().join("app.log");
        write(&copied, "copied line\n");
        let (key, fingerprint) = identity(&copied);
        fs::copy(&copied, dir.path().join("app.log.1")).expect("copy");
        File::create(&copied).expect("truncate");
        let found = find(&copied, key, fingerprint, Match::Copied { born_after: None }, &temp)
            .expect("copy");
        assert_eq!(found.path, dir.path().join("app.log.1"));
        assert!(find(&copied, key, fingerprint, Match::Renamed, &temp).is_none());
    }
}
