//! An index of the intrusion CSV by time, so that a report reads only its window's rows.
//!
//! The CSV is cut into chunks of [`CHUNK_ROWS`] rows; for each, the index keeps its byte range
//! and the earliest and latest timestamp in it. Rows are appended roughly in time order (a
//! backfill or a late file can break it), so a window's rows are in the few chunks whose time
//! range meets it, and no assumption about order is needed for correctness: every chunk that
//! could hold a row of the window is read. The index lives in `state_dir/report-index.json`
//! and is extended from its last offset each time a report is made, so the history is read
//! once, ever.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Rows per chunk.
pub const CHUNK_ROWS: usize = 4096;

/// One chunk of the CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Offset of its first row.
    pub offset: u64,
    /// Length in bytes (whole rows).
    pub len: u64,
    /// Earliest timestamp in it (seconds since the epoch).
    pub min_ts: i64,
    /// Latest timestamp in it.
    pub max_ts: i64,
    /// Rows in it.
    pub rows: u32,
}

/// The index of one CSV file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Index {
    /// The CSV it describes.
    pub csv: PathBuf,
    /// Identity of the CSV (device, inode), so that a replaced file is indexed anew.
    pub identity: (u64, u64),
    /// Offset up to which it is indexed (always at a row boundary).
    pub indexed_to: u64,
    /// The chunks, in file order.
    pub chunks: Vec<Chunk>,
}

/// Why the index could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct IndexError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub source: io::Error,
}

fn identity(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// The bytes of the record the csv reader just read, between positions `start` and `end`,
/// widened to its line end and without the previous line's end (the reader's positions fall
/// inside a CRLF). `None` for a last row that has no line end yet (torn or being written).
pub fn row_span(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let mut s = start;
    while s < end && matches!(bytes[s], b'\r' | b'\n') {
        s += 1;
    }
    let mut e = end;
    while e < bytes.len() && e < end + 2 && matches!(bytes[e], b'\r' | b'\n') {
        e += 1;
    }
    bytes[..e].ends_with(b"\n").then_some((s, e))
}

/// Seconds since the epoch of an RFC 3339 timestamp cell.
pub fn parse_ts(cell: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(cell).ok()?;
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp())
}

impl Index {
    /// Loads the index at `path` for `csv`, or starts an empty one (new, foreign or unreadable
    /// index, or a CSV that was replaced or shrank).
    pub fn load(path: &Path, csv: &Path) -> Index {
        let fresh = || Index {
            csv: csv.to_path_buf(),
            identity: identity(csv).unwrap_or_default(),
            ..Index::default()
        };
        let Ok(bytes) = std::fs::read(path) else {
            return fresh();
        };
        let Ok(index) = serde_json::from_slice::<Index>(&bytes) else {
            return fresh();
        };
        let len = std::fs::metadata(csv).map(|m| m.len()).unwrap_or(0);
        if index.csv != csv || identity(csv).ok() != Some(index.identity) || index.indexed_to > len
        {
            return fresh();
        }
        index
    }

    /// Saves the index (atomically: temp file and rename).
    pub fn save(&self, path: &Path) -> Result<(), IndexError> {
        let bytes = serde_json::to_vec(self).expect("serialisable");
        crate::checkpoint::replace_file(path, &bytes, false).map_err(|source| IndexError {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Indexes the rows appended since the last time (whole rows only).
    pub fn extend(&mut self) -> Result<(), IndexError> {
        let err = |source| IndexError {
            path: self.csv.clone(),
            source,
        };
        let mut f = File::open(&self.csv).map_err(err)?;
        let len = f.metadata().map_err(err)?.len();
        if len <= self.indexed_to {
            return Ok(());
        }
        // A last, partly filled chunk is rebuilt together with the new rows.
        if let Some(last) = self.chunks.last().copied()
            && (last.rows as usize) < CHUNK_ROWS
        {
            self.chunks.pop();
            self.indexed_to = last.offset;
        }
        f.seek(SeekFrom::Start(self.indexed_to)).map_err(err)?;
        let mut bytes = Vec::with_capacity((len - self.indexed_to) as usize);
        f.take(len - self.indexed_to)
            .read_to_end(&mut bytes)
            .map_err(err)?;
        let base = self.indexed_to;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&bytes[..]);
        let mut record = csv::ByteRecord::new();
        let mut chunk: Option<Chunk> = None;
        let mut end_of_last_row = 0u64;
        loop {
            let start = reader.position().byte();
            match reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(_) => break,
            }
            // A torn last row (no line end yet) is not a row yet.
            let Some((start, end)) =
                row_span(&bytes, start as usize, reader.position().byte() as usize)
            else {
                break;
            };
            let (start, end) = (start as u64, end as u64);
            end_of_last_row = end;
            let Some(ts) = record.get(0).and_then(parse_ts) else {
                continue;
            };
            let c = chunk.get_or_insert(Chunk {
                offset: base + start,
                len: 0,
                min_ts: ts,
                max_ts: ts,
                rows: 0,
            });
            c.min_ts = c.min_ts.min(ts);
            c.max_ts = c.max_ts.max(ts);
            c.rows += 1;
            c.len = base + end - c.offset;
            if c.rows as usize == CHUNK_ROWS {
                self.chunks.push(*c);
                chunk = None;
            }
        }
        if let Some(c) = chunk {
            self.chunks.push(c);
        }
        self.indexed_to = base + end_of_last_row;
        Ok(())
    }

    /// The chunks that may hold rows with `from <= ts < to`.
    pub fn chunks_for(&self, from: i64, to: i64) -> impl Iterator<Item = &Chunk> {
        self.chunks
            .iter()
            .filter(move |c| c.max_ts >= from && c.min_ts < to)
    }
}
