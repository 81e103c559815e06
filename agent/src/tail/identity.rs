//! What makes a file the same file: its device and inode, plus a fingerprint of its
//! first bytes, so a recycled inode or a copytruncate is told from the file we knew.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes at the start of a file that make its fingerprint.
pub const FINGERPRINT_BYTES: usize = 256;

/// Device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

impl FileKey {
    pub fn of(metadata: &Metadata) -> Self {
        FileKey { dev: metadata.dev(), ino: metadata.ino() }
    }
}

/// A hash of the first `len` bytes of a file (fewer than [`FINGERPRINT_BYTES`] while the
/// file is that short).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub len: u32,
    /// The first 8 bytes of the SHA-256 of those bytes.
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `file` as it is now.
    pub fn read(file: &File) -> io::Result<Self> {
        let mut head = [0u8; FINGERPRINT_BYTES];
        let len = read_head(file, &mut head)?;
        Ok(Fingerprint::of(&head[..len]))
    }

    fn of(bytes: &[u8]) -> Self {
        let digest = Sha256::digest(bytes);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Fingerprint {
            len: u32::try_from(bytes.len()).unwrap_or(0),
            hash: u64::from_be_bytes(first),
        }
    }

    /// Whether `file` starts with the bytes this fingerprint was taken of.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        let mut head = [0u8; FINGERPRINT_BYTES];
        let len = read_head(file, &mut head[..self.len as usize])?;
        Ok(self.is_of(&head[..len]))
    }

    /// Whether `head`, a file's first bytes, are the bytes this fingerprint was taken of.
    pub fn is_of(&self, head: &[u8]) -> bool {
        head.len() == self.len as usize && Fingerprint::of(head) == *self
    }

    /// Whether the fingerprint could still grow (the file was shorter than the window).
    pub fn is_partial(&self) -> bool {
        (self.len as usize) < FINGERPRINT_BYTES
    }
}

fn read_head(file: &File, head: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < head.len() {
        let read = file.read_at(&mut head[filled..], filled as u64)?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_fingerprint_matches_its_file_as_it_grows_but_not_a_rewritten_one() {
        let mut temp = tempfile::NamedTempFile::new().expect("temp");
        temp.write_all(b"first line\n").expect("write");
        let early = Fingerprint::read(temp.as_file()).expect("fingerprint");
        assert!(early.is_partial());
        temp.write_all(&[b'x'; 400]).expect("write");
        assert!(early.matches(temp.as_file()).expect("read"));
        let full = Fingerprint::read(temp.as_file()).expect("fingerprint");
        assert_eq!(full.len as usize, FINGERPRINT_BYTES);

        temp.as_file().set_len(0).expect("truncate");
        temp.as_file().write_all_at(b"other line\n", 0).expect("write");
        assert!(!early.matches(temp.as_file()).expect("read"));
        assert!(!full.matches(temp.as_file()).expect("read"));
    }
}
