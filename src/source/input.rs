//! Opening an input: a path to a plain or gzip-compressed file, or `-` for stdin.
//!
//! Compression is recognised by the gzip magic bytes, not by the file name: logrotate's
//! `mail.log.2.gz` and a renamed or piped archive are all read the same way. Concatenated
//! gzip members (as `cat a.gz b.gz` makes) are read as one stream.

use std::fs::File;
use std::io::{self, Chain, Cursor, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// An opened input, ready to read from its first byte (decompressed if it was gzip).
pub struct Input {
    /// The name to report in messages: the path, or `-` for stdin.
    pub name: PathBuf,
    /// Whether the input is gzip-compressed.
    pub compressed: bool,
    /// The file's modification time, when it is a file (places yearless timestamps).
    pub modified: Option<std::time::SystemTime>,
    reader: Box<dyn Read + Send>,
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

/// Opens `path` (`-` is stdin), detecting gzip by its magic bytes.
pub fn open(path: &Path) -> io::Result<Input> {
    if path == Path::new("-") {
        return wrap(path.to_path_buf(), io::stdin(), None);
    }
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is a directory",
        ));
    }
    wrap(path.to_path_buf(), file, meta.modified().ok())
}

fn wrap<R: Read + Send + 'static>(
    name: PathBuf,
    mut reader: R,
    modified: Option<std::time::SystemTime>,
) -> io::Result<Input> {
    // Peek at the first two bytes, then hand them back in front of the rest.
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match reader.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head: Chain<Cursor<Vec<u8>>, R> = Cursor::new(magic[..got].to_vec()).chain(reader);
    let compressed = got == 2 && magic == GZIP_MAGIC;
    let reader: Box<dyn Read + Send> = if compressed {
        Box::new(MultiGzDecoder::new(head))
    } else {
        Box::new(head)
    };
    Ok(Input {
        name,
        compressed,
        modified,
        reader,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    fn read_all(mut i: Input) -> Vec<u8> {
        let mut v = Vec::new();
        i.read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn plain_and_gzip_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("mail.log.gz"); // a misleading name: content decides
        std::fs::write(&plain, b"hello\n").unwrap();
        let i = open(&plain).unwrap();
        assert!(!i.compressed);
        assert_eq!(read_all(i), b"hello\n");

        let gz = dir.path().join("mail.log.2");
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(b"a\nb\n").unwrap();
        let mut bytes = enc.finish().unwrap();
        // Two members, as `cat a.gz b.gz` makes.
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(b"c\n").unwrap();
        bytes.extend(enc.finish().unwrap());
        std::fs::write(&gz, bytes).unwrap();
        let i = open(&gz).unwrap();
        assert!(i.compressed);
        assert_eq!(read_all(i), b"a\nb\nc\n");
    }

    #[test]
    fn one_byte_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"\x1f").unwrap();
        assert_eq!(read_all(open(&p).unwrap()), b"\x1f");
        std::fs::write(&p, b"").unwrap();
        assert_eq!(read_all(open(&p).unwrap()), b"");
    }

    #[test]
    fn directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(open(dir.path()).is_err());
    }
}
