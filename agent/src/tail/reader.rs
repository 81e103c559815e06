//! Reading one file from an offset into events: lines framed on LF (a CR before it is
//! dropped), empty lines skipped, multiline events joined, long lines split into marked
//! parts, partial last lines held until completed or timed out, truncation noticed.
//!
//! A [`LineReader`] knows bytes and offsets only: no paths, no AWS. Every event carries
//! the [`Position`] just after it, which is what a checkpoint records once the event is
//! acknowledged, so a restart resumes exactly there.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::split::{LossySplitter, PART_MARKER_RESERVE, part_marker, split_line};
use super::timestamp::EventClock;

/// Bytes read from a file in one go.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A place in a file: everything before `offset` is done, and so are the first
/// `parts_done` parts of the long line that starts at `offset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub offset: u64,
    #[serde(default)]
    pub parts_done: u32,
}

impl Position {
    pub fn at(offset: u64) -> Self {
        Position { offset, parts_done: 0 }
    }
}

/// One event read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailEvent {
    pub timestamp_ms: i64,
    pub message: String,
    /// Where the file is done once this event is acknowledged.
    pub position: Position,
}

/// How a reader frames its file.
#[derive(Debug, Clone)]
pub struct Framing {
    pub max_event_bytes: usize,
    pub multiline_start: Option<Regex>,
    pub multiline_timeout: Duration,
    pub partial_line_timeout: Duration,
}

/// A multiline event still waiting for continuation lines.
#[derive(Debug)]
struct PendingEvent {
    timestamp_ms: i64,
    text: String,
    position: Position,
    last_line_at: Instant,
}

/// What one call to [`LineReader::read`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Bytes consumed from the file.
    pub bytes: u64,
    /// The read stopped at its budget, not at the end of the file.
    pub more: bool,
}

/// The reading state of one file.
#[derive(Debug)]
pub struct LineReader {
    framing: Framing,
    /// File offset of `buffer[0]`: the start of the first line not yet framed.
    offset: u64,
    /// Bytes read but not yet framed: at most one partial line.
    buffer: Vec<u8>,
    /// Parts of the long line at `offset` already shipped before a restart.
    skip_parts: u32,
    /// When the bytes in `buffer` (or the scanned long line) stopped growing without a newline.
    partial_since: Option<Instant>,
    /// For a line longer than an event: how far the search for its newline has got.
    long_line_scanned: Option<u64>,
    /// A line longer than an event whose end is known, being emitted part by part.
    long_line: Option<LongLine>,
    pending: Option<PendingEvent>,
}

/// A long line from `LineReader::offset` to `end`, split into `count` parts.
#[derive(Debug, Clone, Copy)]
struct LongLine {
    end: u64,
    after: Position,
    count: usize,
    /// 0-based index of the next part to emit.
    next_part: usize,
    timestamp_ms: i64,
}

impl LineReader {
    /// A reader resuming at `start` (from a checkpoint, 0, or the end of the file).
    pub fn new(framing: Framing, start: Position) -> Self {
        LineReader {
            framing,
            offset: start.offset,
            buffer: Vec::new(),
            skip_parts: start.parts_done,
            partial_since: None,
            long_line_scanned: None,
            long_line: None,
            pending: None,
        }
    }

    /// The offset up to which lines were framed into events (a partial line excluded).
    pub fn framed_offset(&self) -> u64 {
        self.offset
    }

    /// The offset up to which bytes were read, framed or not.
    pub fn read_offset(&self) -> u64 {
        match (self.long_line, self.long_line_scanned) {
            (Some(line), _) => line.end,
            (None, Some(scanned)) => scanned,
            (None, None) => self.offset + self.buffer.len() as u64,
        }
    }

    /// Reads up to `budget_bytes` of new data from `file` and frames what it can. A file
    /// shorter than the offset reads nothing: its owner notices and calls [`Self::restart`].
    /// `scratch` is a reusable read buffer of [`READ_CHUNK_BYTES`].
    pub fn read(
        &mut self,
        file: &File,
        scratch: &mut Vec<u8>,
        budget_bytes: usize,
        now: Instant,
        clock: &mut EventClock,
        out: &mut Vec<TailEvent>,
    ) -> io::Result<ReadOutcome> {
        let mut outcome = ReadOutcome::default();
        scratch.resize(READ_CHUNK_BYTES.min(budget_bytes.max(1024)), 0);
        let chunk = scratch.as_mut_slice();
        while (outcome.bytes as usize) < budget_bytes {
            let progress = if self.long_line.is_some() {
                self.emit_long_line_parts(file, budget_bytes - outcome.bytes as usize, out)?
            } else if self.long_line_scanned.is_some() {
                self.scan_long_line(file, chunk, clock)?
            } else {
                self.read_lines(file, chunk, now, clock, out)?
            };
            if progress == 0 {
                break;
            }
            outcome.bytes += progress as u64;
        }
        outcome.more = outcome.bytes as usize >= budget_bytes;
        if !outcome.more && self.has_partial_line() && self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
        Ok(outcome)
    }

    /// Reads one chunk and frames its complete lines; the bytes read (0 at the end).
    fn read_lines(
        &mut self,
        file: &File,
        chunk: &mut [u8],
        now: Instant,
        clock: &mut EventClock,
        out: &mut Vec<TailEvent>,
    ) -> io::Result<usize> {
        let read = file.read_at(chunk, self.offset + self.buffer.len() as u64)?;
        if read == 0 {
            return Ok(0);
        }
        self.partial_since = None;
        self.buffer.extend_from_slice(&chunk[..read]);
        self.frame_buffer(now, clock, out);
        if self.buffer.len() > self.framing.max_event_bytes {
            self.long_line_scanned = Some(self.offset + self.buffer.len() as u64);
            self.buffer.clear();
        }
        Ok(read)
    }

    fn has_partial_line(&self) -> bool {
        !self.buffer.is_empty() || self.long_line_scanned.is_some() || self.long_line.is_some()
    }

    /// Frames every complete line in the buffer.
    fn frame_buffer(&mut self, now: Instant, clock: &mut EventClock, out: &mut Vec<TailEvent>) {
        let buffer = std::mem::take(&mut self.buffer);
        let mut consumed = 0;
        for newline in memchr::memchr_iter(b'\n', &buffer) {
            let line = trim_cr(&buffer[consumed..newline]);
            let line_start = self.offset + consumed as u64;
            let after = Position::at(self.offset + newline as u64 + 1);
            self.frame_line(line, line_start, after, now, clock, out);
            consumed = newline + 1;
        }
        self.offset += consumed as u64;
        self.buffer = buffer;
        self.buffer.drain(..consumed);
    }

    fn frame_line(
        &mut self,
        line: &[u8],
        line_start: u64,
        after: Position,
        now: Instant,
        clock: &mut EventClock,
        out: &mut Vec<TailEvent>,
    ) {
        if line.is_empty() {
            self.advance_pending(after);
            return;
        }
        let mut texts = split_line(line, self.framing.max_event_bytes);
        if texts.len() > 1 {
            self.flush_pending(out);
            let count = texts.len();
            let skip = std::mem::take(&mut self.skip_parts) as usize;
            let timestamp_ms = clock.stamp(&String::from_utf8_lossy(line));
            for (index, message) in texts.drain(..).enumerate().skip(skip) {
                let position = part_position(line_start, index + 1, count, after);
                out.push(TailEvent { timestamp_ms, message, position });
            }
            return;
        }
        let text = texts.pop().unwrap_or_default();
        self.skip_parts = 0;
        match (&self.framing.multiline_start, &mut self.pending) {
            (Some(start), Some(pending))
                if !start.is_match(&text)
                    && pending.text.len() + 1 + text.len() <= self.framing.max_event_bytes =>
            {
                pending.text.push('\n');
                pending.text.push_str(&text);
                pending.position = after;
                pending.last_line_at = now;
            }
            (Some(_), _) => {
                self.flush_pending(out);
                let timestamp_ms = clock.stamp(&text);
                self.pending =
                    Some(PendingEvent { timestamp_ms, text, position: after, last_line_at: now });
            }
            (None, _) => {
                let timestamp_ms = clock.stamp(&text);
                out.push(TailEvent { timestamp_ms, message: text, position: after });
            }
        }
    }

    /// An empty line moves a waiting multiline event's position past it.
    fn advance_pending(&mut self, after: Position) {
        if let Some(pending) = &mut self.pending {
            pending.position = after;
        }
    }

    fn flush_pending(&mut self, out: &mut Vec<TailEvent>) {
        if let Some(pending) = self.pending.take() {
            out.push(TailEvent {
                timestamp_ms: pending.timestamp_ms,
                message: pending.text,
                position: pending.position,
            });
        }
    }

    /// Searches on for the newline that ends a line longer than an event; once found,
    /// the line is ready to be emitted part by part. The bytes scanned (0 at the end).
    fn scan_long_line(
        &mut self,
        file: &File,
        chunk: &mut [u8],
        clock: &mut EventClock,
    ) -> io::Result<usize> {
        let Some(scanned) = self.long_line_scanned else {
            return Ok(0);
        };
        let read = file.read_at(chunk, scanned)?;
        if read == 0 {
            return Ok(0);
        }
        self.partial_since = None;
        match memchr::memchr(b'\n', &chunk[..read]) {
            None => self.long_line_scanned = Some(scanned + read as u64),
            Some(newline) => {
                let end = scanned + newline as u64;
                self.start_long_line(file, end, Position::at(end + 1), clock)?;
            }
        }
        Ok(read)
    }

    /// The long line from `self.offset` to `end` (newline excluded) is complete: count
    /// its parts, streaming it from the file, and stamp it.
    fn start_long_line(
        &mut self,
        file: &File,
        mut end: u64,
        after: Position,
        clock: &mut EventClock,
    ) -> io::Result<()> {
        let mut last = [0u8; 1];
        if end > self.offset && file.read_at(&mut last, end - 1)? == 1 && last[0] == b'\r' {
            end -= 1;
        }
        let mut count = 0usize;
        stream_range(file, self.offset, end, self.piece_bytes(), &mut |_| {
            count += 1;
            true
        })?;
        let mut head = vec![0u8; READ_CHUNK_BYTES.min((end - self.offset) as usize)];
        let head_len = file.read_at(&mut head, self.offset)?;
        let timestamp_ms = clock.stamp(&String::from_utf8_lossy(&head[..head_len]));
        let next_part = std::mem::take(&mut self.skip_parts) as usize;
        self.long_line = Some(LongLine { end, after, count, next_part, timestamp_ms });
        self.long_line_scanned = None;
        self.buffer.clear();
        Ok(())
    }

    fn piece_bytes(&self) -> usize {
        self.framing.max_event_bytes - PART_MARKER_RESERVE
    }

    /// Emits the next parts of the long line, about `budget_bytes` of them (one at
    /// least), so that a huge line never sits whole in memory. The bytes emitted.
    fn emit_long_line_parts(
        &mut self,
        file: &File,
        budget_bytes: usize,
        out: &mut Vec<TailEvent>,
    ) -> io::Result<usize> {
        let Some(mut line) = self.long_line else {
            return Ok(0);
        };
        self.flush_pending(out);
        let wanted = (budget_bytes / self.piece_bytes()).max(1);
        let (first, last) = (line.next_part, (line.next_part + wanted).min(line.count));
        let total = u32::try_from(line.count).unwrap_or(u32::MAX);
        let mut index = 0usize;
        let mut emitted = 0usize;
        stream_range(file, self.offset, line.end, self.piece_bytes(), &mut |piece| {
            if (first..last).contains(&index) {
                let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
                out.push(TailEvent {
                    timestamp_ms: line.timestamp_ms,
                    message: format!("{}{piece}", part_marker(number, total)),
                    position: part_position(self.offset, index + 1, line.count, line.after),
                });
                emitted += piece.len();
            }
            index += 1;
            index < last
        })?;
        line.next_part = last;
        if last >= line.count {
            self.offset = line.after.offset;
            self.long_line = None;
        } else {
            self.long_line = Some(line);
        }
        Ok(emitted.max(1))
    }

    /// Sends what waits on a timer: a multiline event with no continuation for
    /// `multiline_timeout`, a partial line unfinished for `partial_line_timeout`.
    pub fn flush_timers(
        &mut self,
        file: &File,
        now: Instant,
        clock: &mut EventClock,
        out: &mut Vec<TailEvent>,
    ) -> io::Result<()> {
        let partial_due = self
            .partial_since
            .is_some_and(|since| now.duration_since(since) >= self.framing.partial_line_timeout);
        if partial_due {
            self.emit_partial_line(file, now, clock, out)?;
        }
        let multiline_due = self.pending.as_ref().is_some_and(|pending| {
            now.duration_since(pending.last_line_at) >= self.framing.multiline_timeout
        });
        if multiline_due && !self.has_partial_line() {
            self.flush_pending(out);
        }
        Ok(())
    }

    /// The file is finished with (rotated away, deleted, truncated): whatever is held
    /// goes out as it is, a partial last line included.
    pub fn finish(
        &mut self,
        file: &File,
        now: Instant,
        clock: &mut EventClock,
        out: &mut Vec<TailEvent>,
    ) -> io::Result<()> {
        self.emit_partial_line(file, now, clock, out)?;
        self.flush_pending(out);
        Ok(())
    }

    fn emit_partial_line(
        &mut self,
        file: &File,
        now: Instant,
        clock: &mut EventClock,
        out: &mut Vec<TailEvent>,
    ) -> io::Result<()> {
        self.partial_since = None;
        if let Some(end) = self.long_line_scanned {
            self.start_long_line(file, end, Position::at(end), clock)?;
            while self.long_line.is_some() {
                self.emit_long_line_parts(file, usize::MAX, out)?;
            }
            return Ok(());
        }
        if self.buffer.is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.buffer);
        let end = self.offset + line.len() as u64;
        let start = self.offset;
        self.frame_line(trim_cr(&line), start, Position::at(end), now, clock, out);
        self.offset = end;
        Ok(())
    }

    /// The file was truncated (and maybe written again): ship what is held, start at 0.
    pub fn restart(&mut self, clock: &mut EventClock, out: &mut Vec<TailEvent>) {
        // The bytes held are all that is left of the old content: ship them.
        let line = std::mem::take(&mut self.buffer);
        let text = String::from_utf8_lossy(trim_cr(&line)).into_owned();
        self.flush_pending(out);
        if !text.is_empty() {
            let timestamp_ms = clock.stamp(&text);
            let end = self.offset + line.len() as u64;
            out.push(TailEvent { timestamp_ms, message: text, position: Position::at(end) });
        }
        *self = LineReader::new(self.framing.clone(), Position::at(0));
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The position after part `index` (1-based) of `count` of the line at `line_start`.
fn part_position(line_start: u64, index: usize, count: usize, after: Position) -> Position {
    if index == count {
        after
    } else {
        Position { offset: line_start, parts_done: u32::try_from(index).unwrap_or(u32::MAX) }
    }
}

/// Streams the bytes `start..end` of `file` through a lossy splitter, until `on_piece`
/// answers false.
fn stream_range(
    file: &File,
    start: u64,
    end: u64,
    piece_bytes: usize,
    on_piece: &mut impl FnMut(&str) -> bool,
) -> io::Result<()> {
    let mut splitter = LossySplitter::new(piece_bytes);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut at = start;
    let mut more = true;
    while at < end && more {
        let want = READ_CHUNK_BYTES.min((end - at) as usize);
        let read = file.read_at(&mut chunk[..want], at)?;
        if read == 0 {
            break;
        }
        at += read as u64;
        splitter.feed(&chunk[..read], at >= end, &mut |piece| {
            if more {
                more = on_piece(piece);
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    struct Fixture {
        file: tempfile::NamedTempFile,
        reader: LineReader,
        clock: EventClock,
        scratch: Vec<u8>,
        now: Instant,
    }

    impl Fixture {
        fn new(framing: Framing) -> Self {
            Fixture {
                file: tempfile::NamedTempFile::new().expect("temp file"),
                reader: LineReader::new(framing, Position::default()),
                clock: EventClock::new(None),
                scratch: Vec::new(),
                now: Instant::now(),
            }
        }

        fn append(&mut self, bytes: &[u8]) {
            self.file.as_file_mut().write_all(bytes).expect("write");
        }

        fn read(&mut self) -> Vec<TailEvent> {
            let mut out = Vec::new();
            let file = self.file.as_file();
            self.reader
                .read(file, &mut self.scratch, usize::MAX, self.now, &mut self.clock, &mut out)
                .expect("read");
            out
        }

        fn messages(&mut self) -> Vec<String> {
            self.read().into_iter().map(|e| e.message).collect()
        }

        fn after(&mut self, elapsed: Duration) -> Vec<String> {
            self.now += elapsed;
            let mut out = self.read();
            let file = self.file.as_file();
            self.reader.flush_timers(file, self.now, &mut self.clock, &mut out).expect("timers");
            out.into_iter().map(|e| e.message).collect()
        }
    }

    fn framing(max_event_bytes: usize) -> Framing {
        Framing {
            max_event_bytes,
            multiline_start: None,
            multiline_timeout: Duration::from_secs(1),
            partial_line_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn lines_end_at_lf_or_crlf_and_empty_lines_are_skipped() {
        let mut f = Fixture::new(framing(1024));
        f.append(b"one\r\ntwo\n\n\r\nthree\n");
        let events = f.read();
        let got: Vec<_> = events.iter().map(|e| (e.message.as_str(), e.position.offset)).collect();
        assert_eq!(got, [("one", 5), ("two", 9), ("three", 18)]);
    }

    #[test]
    fn invalid_utf8_nul_and_control_bytes_are_kept() {
        let mut f = Fixture::new(framing(1024));
        f.append(b"a\xffb\x00c\x07d\n");
        assert_eq!(f.messages(), ["a\u{fffd}b\0c\u{7}d"]);
    }

    #[test]
    fn a_partial_line_waits_for_its_newline_or_its_timeout() {
        let mut f = Fixture::new(framing(1024));
        f.append(b"first\nsec");
        assert_eq!(f.messages(), ["first"]);
        assert!(f.after(Duration::from_secs(2)).is_empty());
        f.append(b"ond\nthi");
        assert_eq!(f.after(Duration::from_secs(2)), ["second"]);
        assert!(
            f.after(Duration::from_secs(4)).is_empty(),
            "the timeout restarts when data arrives"
        );
        assert_eq!(f.after(Duration::from_secs(2)), ["thi"]);
        assert_eq!(f.reader.read_offset(), 16);
    }

    #[test]
    fn a_long_line_is_split_into_parts_with_resumable_positions() {
        let mut f = Fixture::new(framing(300));
        let line = "x".repeat(1000);
        f.append(format!("{line}\r\nshort\n").as_bytes());
        let events = f.read();
        assert_eq!(events.len(), 5, "{events:?}");
        let parts = &events[..4];
        let mut rejoined = String::new();
        for (index, event) in (1..).zip(parts) {
            let marker = part_marker(index, 4);
            rejoined.push_str(event.message.strip_prefix(&marker).expect("marker"));
            let expected = if index < 4 {
                Position { offset: 0, parts_done: index }
            } else {
                Position::at(1002)
            };
            assert_eq!(event.position, expected);
        }
        assert_eq!(rejoined, line);
        assert_eq!(events[4].message, "short");

        let mut resumed = LineReader::new(framing(300), Position { offset: 0, parts_done: 2 });
        let mut out = Vec::new();
        resumed
            .read(f.file.as_file(), &mut Vec::new(), usize::MAX, f.now, &mut f.clock, &mut out)
            .expect("read");
        let got: Vec<_> = out.iter().map(|e| e.message.clone()).collect();
        assert_eq!(got, [events[2].message.clone(), events[3].message.clone(), "short".to_owned()]);
    }

    #[test]
    fn a_line_longer_than_a_read_is_emitted_a_budget_at_a_time() {
        let mut f = Fixture::new(framing(300));
        f.append(format!("{}\nnext\n", "y".repeat(100_000)).as_bytes());
        let piece = 300 - PART_MARKER_RESERVE;
        let parts = 100_000usize.div_ceil(piece);
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let file = f.file.as_file();
        for _ in 0..2 * parts {
            out.clear();
            f.reader.read(file, &mut f.scratch, 600, f.now, &mut f.clock, &mut out).expect("read");
            assert!(out.len() <= 600 / piece + 1, "{} parts at once", out.len());
            seen.extend(out.drain(..).map(|e| e.message));
        }
        assert_eq!(seen.len(), parts + 1);
        assert!(seen[0].starts_with(&part_marker(1, parts as u32)));
        assert_eq!(seen[parts], "next");
    }

    #[test]
    fn multiline_events_join_continuation_lines_until_the_next_start_or_timeout() {
        let mut f = Fixture::new(Framing {
            multiline_start: Some(Regex::new(r"^\d{4}-").expect("regex")),
            ..framing(1024)
        });
        f.append(b"2026-11-26 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)\n2026-11-26 INFO ok\n");
        assert_eq!(
            f.messages(),
            ["2026-11-26 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)"]
        );
        assert_eq!(f.after(Duration::from_millis(1500)), ["2026-11-26 INFO ok"]);
    }

    #[test]
    fn truncation_restarts_at_zero_after_shipping_what_was_held() {
        let mut f = Fixture::new(framing(1024));
        f.append(b"old line\nold partial");
        assert_eq!(f.messages(), ["old line"]);
        f.file.as_file_mut().set_len(0).expect("truncate");
        use std::io::Seek;
        f.file.as_file_mut().rewind().expect("rewind");
        f.append(b"new\n");
        let mut events = Vec::new();
        f.reader.restart(&mut f.clock, &mut events);
        events.extend(f.read());
        let got: Vec<_> = events.iter().map(|e| (e.message.as_str(), e.position.offset)).collect();
        assert_eq!(got, [("old partial", 20), ("new", 4)]);
    }
}
