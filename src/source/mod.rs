//! The source stage: turns log files into blocks of whole lines, with their byte offsets.
//!
//! [`input::open`] opens a path (plain text, gzip detected by its magic bytes, or `-` for
//! stdin) and [`BlockReader`] reads it in large chunks into one reused buffer, handing out
//! runs of complete lines. Lines are never copied or split one by one here: the parser
//! searches whole blocks. A line longer than the limit is skipped in bounded memory and
//! counted.

pub mod fingerprint;
pub mod input;
pub mod journal;
pub mod rotated;
pub mod tailer;

use std::io::{self, Read};

pub use input::{Input, open};

use crate::parse::{MAX_REPEAT, Parsed};
use crate::pipeline::Events;
use crate::stats::Stats;

/// The problem "the server's own auth backend fails" (see [`crate::ratelimit::problem`]): a
/// login that succeeds after it says it is over.
const BACKEND_PROBLEM: &str = "auth backend";

/// A server-side failure logged longer ago than this is read from history, not happening now.
const PAST_AFTER_MINUTES: i64 = 15;

/// Handles what a parsed candidate (a line, a journal entry) turned out to be: rows are kept
/// (as many as it stands for: `count`), the rest counted and reported. `at` says where it was
/// read, for the log (only formatted when something is logged).
pub(crate) fn collect(
    parsed: Parsed,
    count: u32,
    capped: bool,
    at: &dyn std::fmt::Display,
    events: &mut Events,
    stats: &mut Stats,
) {
    let n = count as usize;
    if capped {
        stats.repeats_capped += 1;
        if crate::ratelimit::allow("`message repeated` counts over the cap") {
            tracing::warn!(
                at = %at,
                "a `message repeated` line stands for more than {MAX_REPEAT} lines: {MAX_REPEAT} counted"
            );
        }
    }
    match parsed {
        Parsed::Failure(f) => events.failures.extend(std::iter::repeat_n(f, n)),
        Parsed::Login(l) => {
            if crate::ratelimit::resolved(BACKEND_PROBLEM) {
                tracing::info!(at = %at, "resolved: logins succeed again after auth-backend failures");
            }
            let before = events.failures.len() as u32;
            events.logins_after.extend(std::iter::repeat_n(before, n));
            events.logins.extend(std::iter::repeat_n(l, n))
        }
        Parsed::Counted(c) => stats.count(c, n as u64),
        Parsed::Verdict(v) => {
            stats.verdict(v.known_user, n as u64);
            events.verdicts.extend(std::iter::repeat_n(v, n));
        }
        Parsed::Backend(b) => {
            stats.backend(&b.kind, n as u64);
            // A failure read from history (a backfill, a catch-up after downtime) is news
            // about the past: counted and recorded for reports, logged without alarm.
            let age = chrono::Utc::now().signed_duration_since(b.timestamp.time);
            if age > chrono::Duration::minutes(PAST_AFTER_MINUTES) {
                tracing::info!(
                    at = %at,
                    count = n,
                    "from the log's history, at {} (not happening now): {b}",
                    b.timestamp.to_rfc3339()
                );
            } else {
                let kind = match b.kind.as_str() {
                    "relay" => "relay login failures",
                    _ => {
                        crate::ratelimit::problem(BACKEND_PROBLEM);
                        "auth-backend failures"
                    }
                };
                if crate::ratelimit::allow(kind) {
                    tracing::warn!(at = %at, count = n, "{b}");
                }
            }
            events.backend.extend(std::iter::repeat_n(b, n));
        }
        Parsed::Unrecognised(why) => {
            stats.unrecognised += n as u64;
            if crate::ratelimit::allow("unrecognised SASL failure lines") {
                tracing::warn!(at = %at, "a SASL failure line was not recorded: {why}");
            }
        }
        Parsed::NotFailure => {}
    }
}

/// Bytes read per `read` call: large, so that syscalls and per-block work vanish against the
/// search itself.
pub const READ_CHUNK: usize = 1024 * 1024;

/// Reads a byte stream into blocks of whole lines.
pub struct BlockReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the unconsumed data (a partial line) in `buf`.
    start: usize,
    /// End of the data in `buf`.
    end: usize,
    /// Input offset of `buf[0]`.
    base: u64,
    /// Lines longer than this are skipped.
    max_line_bytes: usize,
    /// Inside an overlong line: drop bytes up to its newline.
    discarding: bool,
    /// Lines skipped because they did not fit in `max_line_bytes`.
    too_long: u64,
    eof: bool,
}

/// A run of whole lines and where it starts in the input.
#[derive(Debug)]
pub struct Block<'a> {
    /// The lines, each ending in `\n` except possibly the last one at end of input.
    pub bytes: &'a [u8],
    /// Input offset of `bytes[0]`.
    pub offset: u64,
}

impl<R: Read> BlockReader<R> {
    /// A reader that skips lines longer than `max_line_bytes` (their bytes are never all held).
    pub fn new(inner: R, max_line_bytes: usize) -> Self {
        let capacity = READ_CHUNK.max(max_line_bytes.saturating_add(READ_CHUNK / 4));
        BlockReader {
            inner,
            buf: vec![0; capacity],
            start: 0,
            end: 0,
            base: 0,
            max_line_bytes,
            discarding: false,
            too_long: 0,
            eof: false,
        }
    }

    /// Counts offsets from `base` (the input is a stream whose first `base` bytes were read
    /// off already).
    pub fn starting_at(mut self, base: u64) -> Self {
        self.base = base;
        self
    }

    /// The next block of complete lines, or `None` at end of input. At end of input a final
    /// line without a newline is returned as a block of its own (a one-shot read wants it;
    /// a follower would wait for its newline instead).
    ///
    /// On a read error the lines already returned stay valid; the partial line is not
    /// returned.
    pub fn next_block(&mut self) -> io::Result<Option<Block<'_>>> {
        loop {
            if self.eof {
                return Ok(None);
            }
            // Keep the partial line, move it to the front, read more after it.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.base += self.start as u64;
                self.end -= self.start;
                self.start = 0;
            }
            let n = read_retrying(&mut self.inner, &mut self.buf[self.end..])?;
            if n == 0 {
                self.eof = true;
                if self.discarding || self.end == 0 {
                    return Ok(None);
                }
                let (s, e) = (0, self.end);
                self.start = e;
                return Ok(Some(Block {
                    bytes: &self.buf[s..e],
                    offset: self.base,
                }));
            }
            let new_from = self.end;
            self.end += n;
            if self.discarding {
                match memchr::memchr(b'\n', &self.buf[new_from..self.end]) {
                    Some(i) => {
                        self.discarding = false;
                        self.start = new_from + i + 1;
                    }
                    None => self.start = self.end,
                }
                if self.start == self.end {
                    continue;
                }
            }
            // Only the new bytes can hold the last newline: the partial line had none.
            let search_from = new_from.max(self.start);
            match memchr::memrchr(b'\n', &self.buf[search_from..self.end]) {
                Some(i) => {
                    let block_end = search_from + i + 1;
                    let s = self.start;
                    self.start = block_end;
                    self.check_partial();
                    let offset = self.base + s as u64;
                    return Ok(Some(Block {
                        bytes: &self.buf[s..block_end],
                        offset,
                    }));
                }
                None => self.check_partial(),
            }
        }
    }

    /// A partial line already over the limit will be skipped: stop holding it.
    fn check_partial(&mut self) {
        if self.end - self.start > self.max_line_bytes {
            self.too_long += 1;
            self.discarding = true;
            self.start = self.end;
        }
    }

    /// Lines skipped so far because they were longer than the limit (only those that did not
    /// fit in a block; the parser counts overlong lines inside blocks).
    pub fn too_long(&self) -> u64 {
        self.too_long
    }

    /// Input offset just past the last byte handed out in a block.
    pub fn consumed(&self) -> u64 {
        self.base + self.start as u64
    }
}

/// `read` that retries on `Interrupted`.
fn read_retrying(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its data in small pieces, like a pipe.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn blocks(data: &[u8], piece: usize, max: usize) -> (Vec<(u64, Vec<u8>)>, u64) {
        let mut r = BlockReader::new(Trickle(data, piece), max);
        let mut out = Vec::new();
        while let Some(b) = r.next_block().unwrap() {
            out.push((b.offset, b.bytes.to_vec()));
        }
        (out, r.too_long())
    }

    #[test]
    fn blocks_hold_whole_lines_and_offsets() {
        let data = b"one\ntwo\nthree\nfour";
        let (bs, _) = blocks(data, 5, 100);
        let joined: Vec<u8> = bs.iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(joined, data);
        for (off, b) in &bs {
            assert_eq!(&data[*off as usize..*off as usize + b.len()], &b[..]);
            // Every block but the last ends at a newline.
            if *off as usize + b.len() < data.len() {
                assert_eq!(b.last(), Some(&b'\n'));
            }
        }
        assert_eq!(bs.last().unwrap().1, b"four");
    }

    #[test]
    fn overlong_line_is_skipped_in_bounded_memory() {
        let mut data = b"short\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
        data.extend_from_slice(b"\nafter\n");
        let mut r = BlockReader::new(&data[..], 64 * 1024);
        let mut got = Vec::new();
        while let Some(b) = r.next_block().unwrap() {
            got.extend_from_slice(b.bytes);
        }
        assert_eq!(got, b"short\nafter\n");
        assert_eq!(r.too_long(), 1);
        assert!(
            r.buf.len() < 2 * 1024 * 1024,
            "buffer grew to {}",
            r.buf.len()
        );
    }

    #[test]
    fn overlong_line_without_newline_at_end() {
        let mut data = b"short\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 3 * 1024 * 1024));
        let (bs, too_long) = blocks(&data, READ_CHUNK, 1024);
        assert_eq!(bs.len(), 1);
        assert_eq!(bs[0].1, b"short\n");
        assert_eq!(too_long, 1);
    }

    #[test]
    fn empty_input() {
        let (bs, too_long) = blocks(b"", 10, 10);
        assert!(bs.is_empty());
        assert_eq!(too_long, 0);
    }
}

#[cfg(test)]
mod properties {
    //! Property tests: however the input arrives (any read sizes), the blocks hold exactly the
    //! input's lines minus the overlong ones, and the parser finds the same lines as on the
    //! whole input at once.

    use super::*;
    use crate::parse::{Parsed, Parser, YearContext};
    use proptest::prelude::*;

    struct Pieces<'a> {
        data: &'a [u8],
        sizes: Vec<usize>,
        i: usize,
    }

    impl Read for Pieces<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let want = self.sizes[self.i % self.sizes.len()].max(1);
            self.i += 1;
            let n = want.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    const FAIL: &str = "Nov 22 08:01:04 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: x, sasl_username=";

    fn line() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[a-z ]{0,80}".prop_map(|s| s.into_bytes()),
            "[a-z]{1,20}".prop_map(|u| format!("{FAIL}{u}").into_bytes()),
            // Overlong (the limit in these tests is 1024).
            (1100usize..3000).prop_map(|n| vec![b'z'; n]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn blocks_are_the_lines_whatever_the_read_sizes(
            lines in prop::collection::vec(line(), 0..60),
            sizes in prop::collection::vec(1usize..5000, 1..8),
            final_newline in any::<bool>(),
        ) {
            let mut data = lines.join(&b'\n');
            if final_newline && !data.is_empty() {
                data.push(b'\n');
            }
            let mut r = BlockReader::new(Pieces { data: &data, sizes, i: 0 }, 1024);
            let mut got = Vec::new();
            let mut offsets_ok = true;
            while let Some(b) = r.next_block().unwrap() {
                offsets_ok &= data[b.offset as usize..].starts_with(b.bytes);
                got.extend_from_slice(b.bytes);
            }
            prop_assert!(offsets_ok);
            // What came out: every line that fits, in order (overlong ones dropped whole).
            let kept: Vec<&[u8]> = got.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
            let want: Vec<&[u8]> = lines.iter().map(|l| &l[..]).filter(|l| l.len() <= 1024 && !l.is_empty()).collect();
            // Overlong lines that fit in one read buffer are left to the parser to skip.
            let without_long: Vec<&[u8]> = kept.iter().copied().filter(|l| l.len() <= 1024).collect();
            prop_assert_eq!(without_long, want);
        }

        #[test]
        fn the_parser_finds_the_same_lines_in_one_block_or_many(
            lines in prop::collection::vec(line(), 0..60),
            sizes in prop::collection::vec(1usize..5000, 1..8),
        ) {
            let mut data = lines.join(&b'\n');
            data.push(b'\n');
            let parser = Parser::new(1024, "local");
            let years = YearContext::now();
            let users = |found: &mut Vec<(u64, String)>, bytes: &[u8], offset: u64| {
                parser.scan_block(bytes, offset, 0, &years, |f| {
                    if let Parsed::Failure(a) = f.parsed {
                        found.push((f.end_offset, a.username.unwrap_or_default().into()));
                    }
                });
            };
            let mut whole = Vec::new();
            users(&mut whole, &data, 0);
            let mut pieces = Vec::new();
            let mut r = BlockReader::new(Pieces { data: &data, sizes, i: 0 }, 1024);
            while let Some(b) = r.next_block().unwrap() {
                users(&mut pieces, b.bytes, b.offset);
            }
            prop_assert_eq!(pieces, whole);
        }
    }
}
