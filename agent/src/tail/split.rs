//! Turning the raw bytes of one line into event texts: invalid UTF-8 becomes U+FFFD
//! (never dropped), and a line longer than an event may be becomes several events, each
//! marked `[klaxon: part i/n] `, cut on character boundaries.
//!
//! The bytes arrive in chunks (a long line is read from the file in pieces, never held
//! whole), so decoding carries an incomplete UTF-8 sequence from one chunk to the next.
//! Splitting is deterministic: a first pass counts the parts, a second emits them.

use std::fmt::Write as _;

/// Room kept for the marker of any part number up to 9,999,999.
pub const PART_MARKER_RESERVE: usize = "[klaxon: part 9999999/9999999] ".len();

/// The marker before part `index` (1-based) of `count`.
pub fn part_marker(index: u32, count: u32) -> String {
    format!("[klaxon: part {index}/{count}] ")
}

/// Decodes chunks of bytes lossily into text, handing out pieces of at most
/// `max_piece_bytes` bytes of UTF-8, each cut on a character boundary.
pub struct LossySplitter {
    max_piece_bytes: usize,
    carry: Vec<u8>,
    piece: String,
}

impl LossySplitter {
    pub fn new(max_piece_bytes: usize) -> Self {
        LossySplitter { max_piece_bytes, carry: Vec::new(), piece: String::new() }
    }

    /// Feeds the next chunk of the line; `last` says no more follow. Each full piece is
    /// passed to `on_piece`, and so is the final partial piece after the last chunk.
    pub fn feed(&mut self, chunk: &[u8], last: bool, on_piece: &mut impl FnMut(&str)) {
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(chunk);
        let cut = if last { data.len() } else { incomplete_tail_start(&data) };
        for part in data[..cut].utf8_chunks() {
            self.push_str(part.valid(), on_piece);
            if !part.invalid().is_empty() {
                self.push_char(char::REPLACEMENT_CHARACTER, on_piece);
            }
        }
        self.carry = data[cut..].to_vec();
        if last && !self.piece.is_empty() {
            on_piece(&self.piece);
            self.piece.clear();
        }
    }

    fn push_str(&mut self, text: &str, on_piece: &mut impl FnMut(&str)) {
        if self.piece.len() + text.len() <= self.max_piece_bytes {
            self.piece.push_str(text);
            return;
        }
        for c in text.chars() {
            self.push_char(c, on_piece);
        }
    }

    fn push_char(&mut self, c: char, on_piece: &mut impl FnMut(&str)) {
        if self.piece.len() + c.len_utf8() > self.max_piece_bytes {
            on_piece(&self.piece);
            self.piece.clear();
        }
        self.piece.push(c);
    }
}

/// Where a UTF-8 sequence that the end of `data` cuts short begins (`data.len()` if none).
fn incomplete_tail_start(data: &[u8]) -> usize {
    let from = data.len().saturating_sub(3);
    for start in from..data.len() {
        let needed = match data[start] {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => continue,
        };
        if start + needed > data.len() {
            return start;
        }
    }
    data.len()
}

/// The event texts of one whole line held in memory: one event when it fits in
/// `max_event_bytes`, else marked parts.
pub fn split_line(line: &[u8], max_event_bytes: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(line);
    if text.len() <= max_event_bytes {
        return vec![text.into_owned()];
    }
    let mut pieces = Vec::new();
    let mut splitter = LossySplitter::new(max_event_bytes - PART_MARKER_RESERVE);
    splitter.feed(line, true, &mut |piece| pieces.push(piece.to_owned()));
    let count = u32::try_from(pieces.len()).unwrap_or(u32::MAX);
    (1..)
        .zip(pieces)
        .map(|(index, piece)| {
            let mut event = part_marker(index, count);
            let _ = write!(event, "{piece}");
            event
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(chunks: &[&[u8]], max: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut splitter = LossySplitter::new(max);
        for (i, chunk) in chunks.iter().enumerate() {
            splitter.feed(chunk, i + 1 == chunks.len(), &mut |p| out.push(p.to_owned()));
        }
        out
    }

    #[test]
    fn a_character_cut_between_chunks_is_carried_not_replaced() {
        let euro = "€".as_bytes(); // three bytes
        assert_eq!(pieces(&[b"a", &euro[..1], &euro[1..2], &euro[2..], b"b"], 100), ["a€b"]);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        assert_eq!(pieces(&[b"a\xffb\xe2\x82", b"c"], 100), ["a\u{fffd}b\u{fffd}c"]);
        assert_eq!(pieces(&[b"end\xe2\x82"], 100), ["end\u{fffd}"]);
    }

    #[test]
    fn pieces_are_cut_on_character_boundaries_within_the_limit() {
        let text = "é".repeat(5); // 10 bytes
        let got = pieces(&[text.as_bytes()], 3);
        assert_eq!(got, ["é", "é", "é", "é", "é"]);
        assert_eq!(pieces(&[b"abcdefg"], 3), ["abc", "def", "g"]);
    }

    #[test]
    fn a_long_line_becomes_marked_parts_that_rejoin_to_the_line() {
        let line: String = (0..1000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let events = split_line(line.as_bytes(), 300);
        assert!(events.len() > 1);
        let count = events.len() as u32;
        let mut rejoined = String::new();
        for (index, event) in (1..).zip(&events) {
            assert!(event.len() <= 300, "{}", event.len());
            let marker = part_marker(index, count);
            rejoined.push_str(event.strip_prefix(&marker).expect("marked"));
        }
        assert_eq!(rejoined, line);
        assert_eq!(split_line(b"short", 300), ["short"]);
    }
}
