//! What a stream's manifest says of each file it shipped from: which bytes were shipped,
//! which the agent declared lost, and which are neither — lost without a word, which
//! `klaxon logs verify` reports as loss.
//!
//! A file is its device and inode. Its records are read in order; each shipped range
//! starts where the last acknowledged one ended, so a hole between ranges is bytes that
//! were skipped. Content that starts again at byte 0 (a truncation, a recycled inode)
//! begins a new epoch: the old one ends where it got to. An epoch that ended (one that
//! a new epoch followed) must also reach the size the agent last saw it at; the last
//! epoch may still be being read, and what it has not reached is only reported as not
//! yet shipped.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::manifest_record::{DeclaredGap, ManifestRecord};

/// Bytes of a file neither shipped nor declared lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostRange {
    pub bytes: Range<u64>,
    /// The record whose range ends where the loss starts, and the one after the loss
    /// (none: the epoch ended without reaching the size the agent saw).
    pub after_seq: Option<u64>,
    pub before_seq: Option<u64>,
}

/// One file as the manifest tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCoverage {
    /// Where the file was last seen, and its fingerprint then.
    pub path: String,
    pub fingerprint: String,
    pub dev: u64,
    pub inode: u64,
    /// Bytes shipped, each counted once, over every epoch.
    pub shipped_bytes: u64,
    pub lost: Vec<LostRange>,
    pub declared: Vec<DeclaredGap>,
    /// Bytes of the last epoch the agent had seen and not shipped as of its last record.
    pub not_yet_shipped: Option<Range<u64>>,
}

/// One stretch of a file's content, from a start to wherever it got.
#[derive(Debug, Default)]
struct Epoch {
    /// Shipped (or, `declared`, lost) ranges, with the record that holds each.
    ranges: Vec<Span>,
    /// The furthest shipped byte.
    end: u64,
    /// The size the agent last saw.
    size: u64,
}

#[derive(Debug)]
struct Span {
    bytes: Range<u64>,
    seq: u64,
    declared: bool,
}

/// The coverage of every file `records` (in chain order) mention, by device and inode.
pub fn coverage(records: &[ManifestRecord]) -> Vec<FileCoverage> {
    let mut by_file: BTreeMap<(u64, u64), (FileCoverage, Epoch)> = BTreeMap::new();
    for record in records {
        // A record's gaps were declared before the lines it carries from content that
        // starts again at 0 (a replaced file), so they belong to the epoch before.
        for gap in &record.gaps {
            let (file, epoch) = slot(&mut by_file, gap.dev, gap.inode);
            if file.path.is_empty() {
                file.path.clone_from(&gap.path);
                file.fingerprint.clone_from(&gap.fingerprint);
            }
            // A content lost from its start (a later content of a truncated file) is an
            // epoch of its own, like one shipped from 0: it does not cover the one before.
            if gap.from == 0 && epoch.end > 0 {
                let ended = std::mem::take(epoch);
                close(file, ended, true);
            }
            let to = gap.to.unwrap_or(u64::MAX);
            epoch.ranges.push(Span {
                bytes: gap.from..to.max(gap.from),
                seq: record.seq,
                declared: true,
            });
            file.declared.push(gap.clone());
        }
        for range in &record.files {
            let (file, epoch) = slot(&mut by_file, range.dev, range.inode);
            file.path.clone_from(&range.path);
            file.fingerprint.clone_from(&range.fingerprint);
            let from = range.from.unwrap_or(epoch.end);
            if from == 0 && epoch.end > 0 {
                let ended = std::mem::take(epoch);
                close(file, ended, true);
            }
            epoch.ranges.push(Span {
                bytes: from..range.to.max(from),
                seq: record.seq,
                declared: false,
            });
            epoch.end = epoch.end.max(range.to);
            if let Some(size) = range.size {
                epoch.size = size;
            }
        }
    }
    by_file
        .into_values()
        .map(|(mut file, epoch)| {
            close(&mut file, epoch, false);
            file
        })
        .collect()
}

fn slot(
    files: &mut BTreeMap<(u64, u64), (FileCoverage, Epoch)>,
    dev: u64,
    inode: u64,
) -> (&mut FileCoverage, &mut Epoch) {
    let (file, epoch) = files.entry((dev, inode)).or_insert_with(|| {
        let file = FileCoverage {
            path: String::new(),
            fingerprint: String::new(),
            dev,
            inode,
            shipped_bytes: 0,
            lost: Vec::new(),
            declared: Vec::new(),
            not_yet_shipped: None,
        };
        (file, Epoch::default())
    });
    (file, epoch)
}

/// Finds the holes of an epoch; one that `ended` must also reach the size last seen.
fn close(file: &mut FileCoverage, mut epoch: Epoch, ended: bool) {
    epoch.ranges.sort_by_key(|span| span.bytes.start);
    let Some(start) = epoch.ranges.first().map(|span| span.bytes.start) else { return };
    let (mut covered_to, mut shipped_to) = (start, start);
    let mut covered_by = None;
    for span in &epoch.ranges {
        if span.bytes.start > covered_to {
            file.lost.push(LostRange {
                bytes: covered_to..span.bytes.start,
                after_seq: covered_by,
                before_seq: Some(span.seq),
            });
        }
        if span.bytes.end > covered_to {
            covered_to = span.bytes.end;
            covered_by = Some(span.seq);
        }
        if !span.declared {
            let from = span.bytes.start.max(shipped_to);
            file.shipped_bytes += span.bytes.end.saturating_sub(from);
            shipped_to = shipped_to.max(span.bytes.end);
        }
    }
    if epoch.size > covered_to {
        let tail = covered_to..epoch.size;
        if ended {
            file.lost.push(LostRange { bytes: tail, after_seq: covered_by, before_seq: None });
        } else {
            file.not_yet_shipped = Some(tail);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest_record::{CHAIN_START, FORMAT_VERSION, FileRange};

    fn range(from: u64, to: u64, size: u64) -> FileRange {
        FileRange {
            path: "/var/log/app.log".into(),
            dev: 1,
            inode: 7,
            fingerprint: "256:00".into(),
            from: Some(from),
            to,
            size: Some(size),
        }
    }

    fn gap(from: u64, to: Option<u64>) -> DeclaredGap {
        DeclaredGap {
            path: "/var/log/app.log".into(),
            dev: 1,
            inode: 7,
            fingerprint: "256:00".into(),
            from,
            to,
            reason: "deleted before it was read to its end".into(),
        }
    }

    fn records(entries: Vec<(Vec<FileRange>, Vec<DeclaredGap>)>) -> Vec<ManifestRecord> {
        (0..)
            .zip(entries)
            .map(|(seq, (files, gaps))| ManifestRecord {
                klaxon_manifest: FORMAT_VERSION,
                seq,
                prev: CHAIN_START.into(),
                files,
                gaps,
                events: 1,
                rejected: 0,
                first_ts: 0,
                last_ts: 0,
                sha256: String::new(),
                hash: String::new(),
            })
            .collect()
    }

    fn one(entries: Vec<(Vec<FileRange>, Vec<DeclaredGap>)>) -> FileCoverage {
        let mut files = coverage(&records(entries));
        assert_eq!(files.len(), 1, "{files:?}");
        files.remove(0)
    }

    #[test]
    fn contiguous_ranges_and_a_resent_one_cover_the_file_once() {
        let file = one(vec![
            (vec![range(0, 100, 150)], vec![]),
            (vec![range(100, 150, 150)], vec![]),
            (vec![range(100, 150, 150)], vec![]),
        ]);
        assert!(file.lost.is_empty(), "{file:?}");
        assert_eq!(file.shipped_bytes, 150);
        assert_eq!(file.not_yet_shipped, None);
    }

    #[test]
    fn a_hole_is_loss_between_its_records_unless_declared() {
        let lost =
            one(vec![(vec![range(0, 100, 300)], vec![]), (vec![range(200, 300, 300)], vec![])]);
        let expected = LostRange { bytes: 100..200, after_seq: Some(0), before_seq: Some(1) };
        assert_eq!(lost.lost, [expected]);
        assert_eq!(lost.shipped_bytes, 200);

        let declared = one(vec![
            (vec![range(0, 100, 300)], vec![]),
            (vec![], vec![gap(100, Some(200))]),
            (vec![range(200, 300, 300)], vec![]),
        ]);
        assert!(declared.lost.is_empty(), "{declared:?}");
        assert_eq!(declared.declared.len(), 1);
    }

    #[test]
    fn a_restart_at_zero_ends_an_epoch_which_must_reach_its_last_size() {
        // Truncated when 200 bytes were seen and 150 shipped, nothing declared.
        let lost = one(vec![(vec![range(0, 150, 200)], vec![]), (vec![range(0, 40, 40)], vec![])]);
        let expected = LostRange { bytes: 150..200, after_seq: Some(0), before_seq: None };
        assert_eq!(lost.lost, [expected]);
        assert_eq!(lost.shipped_bytes, 190);

        let declared = one(vec![
            (vec![range(0, 150, 200)], vec![gap(150, Some(200))]),
            (vec![range(0, 40, 60)], vec![]),
        ]);
        assert!(declared.lost.is_empty(), "{declared:?}");
        assert_eq!(declared.not_yet_shipped, Some(40..60), "the live epoch is still being read");
    }

    #[test]
    fn a_gap_declared_with_the_first_lines_of_new_content_ends_the_old_epoch() {
        // Replaced while the agent was down (its inode reused): the old content's rest is
        // declared, and the new content's first lines travel in the same batch.
        let file = one(vec![
            (vec![range(0, 100, 100)], vec![]),
            (vec![range(0, 50, 50)], vec![gap(100, None)]),
        ]);
        assert!(file.lost.is_empty(), "{file:?}");
        assert_eq!(file.shipped_bytes, 150);
    }

    #[test]
    fn a_later_content_lost_from_its_start_does_not_cover_the_content_before() {
        // 150 of 200 bytes shipped, nothing declared for the rest; then the content after
        // a truncation is declared lost whole: it is an epoch of its own.
        let file = one(vec![(vec![range(0, 150, 200)], vec![]), (vec![], vec![gap(0, None)])]);
        let expected = LostRange { bytes: 150..200, after_seq: Some(0), before_seq: None };
        assert_eq!(file.lost, [expected]);
    }

    #[test]
    fn a_gap_of_unknown_end_covers_the_rest_of_its_epoch() {
        let file = one(vec![(vec![range(0, 100, 500)], vec![gap(100, None)])]);
        assert!(file.lost.is_empty(), "{file:?}");
        assert_eq!(file.not_yet_shipped, None);
    }
}
