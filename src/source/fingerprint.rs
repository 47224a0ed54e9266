//! File identity by content: a hash of the file's first line (after decompression).
//!
//! Names change (logrotate renames `mail.log` to `mail.log.1`, then compresses it to
//! `mail.log.1.gz`) and inodes change (compression writes a new file), but the first line of a
//! log stays what it was. So positions are recorded per fingerprint, and a file found under any
//! name resumes where its content was left (vector's file source does the same).

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The identity of a log file's content: xxh3 of its first line, newline included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// The fingerprint of a first line (with its newline).
    pub fn of_line(line: &[u8]) -> Self {
        Fingerprint(xxhash_rust::xxh3::xxh3_64(line))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16)
            .map(Fingerprint)
            .map_err(|_| serde::de::Error::custom(format!("bad fingerprint {s:?}")))
    }
}

/// The fingerprint of a plain file read at offset 0 through `file`, or `None` while it has no
/// complete first line (empty, or its first line is still being written). A first line longer
/// than `max` bytes is hashed over its first `max` bytes.
pub fn of_plain(file: &File, max: usize) -> io::Result<Option<Fingerprint>> {
    Ok(locate(file, max)?.map(|(fp, _)| fp))
}

/// The fingerprint of a plain file and where its data starts. A file starting with a hole (NULs
/// written by a writer without O_APPEND after a copytruncate) is identified by its first line
/// after the hole, which is where its data starts: otherwise every such file would hash the same
/// NULs. Finding the end of the hole reads it once; callers keep the start and check the file
/// again with [`of_plain_at`].
pub fn locate(file: &File, max: usize) -> io::Result<Option<(Fingerprint, u64)>> {
    let mut first = [0u8; 1];
    let start = match file.read_at(&mut first, 0)? {
        0 => return Ok(None),
        _ if first[0] != 0 => 0,
        _ => match after_nuls(file, 0)? {
            Some(at) => at,
            None => return Ok(None),
        },
    };
    Ok(of_plain_at(file, start, max)?.map(|fp| (fp, start)))
}

/// The fingerprint of the line starting at `start` (where [`locate`] found the data to start).
pub fn of_plain_at(file: &File, start: u64, max: usize) -> io::Result<Option<Fingerprint>> {
    let mut buf = vec![0u8; 512.min(max.max(1))];
    let mut filled = 0;
    loop {
        let n = file.read_at(&mut buf[filled..], start + filled as u64)?;
        if n == 0 {
            return Ok(None);
        }
        let from = filled;
        filled += n;
        if let Some(i) = memchr::memchr(b'\n', &buf[from..filled]) {
            return Ok(Some(Fingerprint::of_line(&buf[..from + i + 1])));
        }
        if filled == buf.len() {
            if buf.len() >= max {
                return Ok(Some(Fingerprint::of_line(&buf)));
            }
            buf.resize((buf.len() * 2).min(max), 0);
        }
    }
}

/// Offset of the first byte at or after `from` that is not NUL (`None`: there is none yet).
pub fn after_nuls(file: &File, from: u64) -> io::Result<Option<u64>> {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut at = from;
    loop {
        let n = file.read_at(&mut chunk, at)?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(i) = chunk[..n].iter().position(|&b| b != 0) {
            return Ok(Some(at + i as u64));
        }
        at += n as u64;
    }
}

/// The fingerprint of any input (plain or gzip) at `path`, read from its start, and whether
/// it is gzip (the caller reads it accordingly).
pub fn of_path(path: &Path, max: usize) -> io::Result<(Option<Fingerprint>, bool)> {
    let input = super::open(path)?;
    if !input.compressed {
        return Ok((of_plain(&File::open(path)?, max)?, false));
    }
    Ok((of_gzip(input, max)?, true))
}

fn of_gzip(input: super::Input, max: usize) -> io::Result<Option<Fingerprint>> {
    // A hole at the start (see `locate`) is skipped here too: the compressed rotation of a
    // holey log must keep its fingerprint.
    let (mut input, _) = skip_leading_nuls(input)?;
    let mut first = Vec::with_capacity(256);
    let mut byte = [0u8; 4096];
    loop {
        let n = match input.read(&mut byte) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            // A gzip file still being written: no complete first line yet.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(i) = memchr::memchr(b'\n', &byte[..n]) {
            first.extend_from_slice(&byte[..=i]);
            first.truncate(max);
            return Ok(Some(Fingerprint::of_line(&first)));
        }
        first.extend_from_slice(&byte[..n]);
        if first.len() >= max {
            first.truncate(max);
            return Ok(Some(Fingerprint::of_line(&first)));
        }
    }
}

/// A stream with its leading NULs (a hole) read off, and how many there were: the stream goes
/// on at that offset.
pub fn skip_leading_nuls<R: Read>(mut input: R) -> io::Result<(impl Read, u64)> {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut skipped = 0u64;
    loop {
        let n = match input.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let nuls = chunk[..n].iter().take_while(|&&b| b == 0).count();
        skipped += nuls as u64;
        if nuls < n || n == 0 {
            chunk.drain(..nuls);
            chunk.truncate(n - nuls);
            return Ok((io::Cursor::new(chunk).chain(input), skipped));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_holey_log_keeps_its_fingerprint_once_gzipped() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("mail.log.1");
        let mut text = vec![0u8; 70_000];
        text.extend_from_slice(b"line a\nline b\n");
        std::fs::write(&plain, &text).unwrap();
        let gz = dir.path().join("mail.log.2.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&text).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let want = Some(Fingerprint::of_line(b"line a\n"));
        assert_eq!(of_path(&plain, 4096).unwrap(), (want, false));
        assert_eq!(of_path(&gz, 4096).unwrap(), (want, true));
        let (mut rest, skipped) = skip_leading_nuls(&text[..]).unwrap();
        let mut after = Vec::new();
        rest.read_to_end(&mut after).unwrap();
        assert_eq!((skipped, &after[..]), (70_000, &b"line a\nline b\n"[..]));
    }

    #[test]
    fn a_leading_hole_is_skipped_so_holey_files_do_not_look_alike() {
        let dir = tempfile::tempdir().unwrap();
        let fp = |name: &str, line: &str| {
            use std::os::unix::fs::FileExt;
            let p = dir.path().join(name);
            let f = std::fs::File::create(&p).unwrap();
            f.write_all_at(line.as_bytes(), 100_000).unwrap();
            of_plain(&std::fs::File::open(&p).unwrap(), 4096).unwrap()
        };
        let (a, b) = (fp("a", "line a\n"), fp("b", "line b\n"));
        assert!(a.is_some() && a != b);
        assert_eq!(a, Some(Fingerprint::of_line(b"line a\n")));
    }

    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    #[test]
    fn same_first_line_same_fingerprint_in_any_form() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("mail.log");
        std::fs::write(&plain, b"Nov 22 first line\nsecond\n").unwrap();
        let gz = dir.path().join("mail.log.1.gz");
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(b"Nov 22 first line\nsomething else entirely\n")
            .unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let (a, a_gz) = of_path(&plain, 65536).unwrap();
        let (b, b_gz) = of_path(&gz, 65536).unwrap();
        assert_eq!((a_gz, b_gz), (false, true));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a, b);
        assert_eq!(a, Fingerprint::of_line(b"Nov 22 first line\n"));
        assert_eq!(
            of_plain(&File::open(&plain).unwrap(), 65536).unwrap(),
            Some(a)
        );
    }

    #[test]
    fn no_fingerprint_without_a_complete_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"").unwrap();
        assert_eq!(of_path(&p, 1024).unwrap(), (None, false));
        std::fs::write(&p, b"partial").unwrap();
        assert_eq!(of_path(&p, 1024).unwrap(), (None, false));
    }

    #[test]
    fn long_first_line_is_cut_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let line = vec![b'a'; 5000];
        std::fs::write(&p, &line).unwrap();
        let f = of_plain(&File::open(&p).unwrap(), 2048).unwrap().unwrap();
        assert_eq!(f, Fingerprint::of_line(&line[..2048]));
    }

    #[test]
    fn round_trips_as_hex() {
        let f = Fingerprint(0x0123_4567_89ab_cdef);
        let s = serde_json::to_string(&f).unwrap();
        assert_eq!(s, "\"0123456789abcdef\"");
        assert_eq!(serde_json::from_str::<Fingerprint>(&s).unwrap(), f);
    }
}
