//! Finding a log's rotated history: the files beside `mail.log` that logrotate or Postfix's
//! `postfix logrotate` made of it (`mail.log.1`, `mail.log.2.gz`, `mail.log-20261122`,
//! `mail.log.20261122-083000.gz`), oldest first.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A rotated sibling of a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sibling {
    /// Its path.
    pub path: PathBuf,
    /// Its modification time.
    pub modified: SystemTime,
}

/// Suffixes of compressions this program cannot read; such files are reported, not read.
const UNREADABLE: [&str; 4] = [".xz", ".bz2", ".zst", ".lz4"];

/// The rotated siblings of `log` (not `log` itself), oldest first: by modification time, and for
/// equal times by rotation number, higher numbers being older. Files in a compression this
/// program cannot read are returned in the second list.
pub fn siblings(log: &Path) -> std::io::Result<(Vec<Sibling>, Vec<PathBuf>)> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(other) = file_name.to_str() else {
            continue;
        };
        let Some(rest) = other.strip_prefix(name) else {
            continue;
        };
        if !is_rotation_suffix(rest) {
            continue;
        }
        // Temporary files of editors and of our own kind are not rotations.
        if rest.ends_with(".tmp") || rest.ends_with('~') || rest.ends_with(".swp") {
            continue;
        }
        let path = dir.join(&file_name);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if UNREADABLE.iter().any(|s| rest.ends_with(s)) {
            unreadable.push(path);
            continue;
        }
        found.push((
            Sibling {
                path,
                modified: meta.modified()?,
            },
            rotation_number(rest),
        ));
    }
    found.sort_by(|(a, an), (b, bn)| {
        a.modified
            .cmp(&b.modified)
            .then(bn.cmp(an))
            .then(a.path.cmp(&b.path))
    });
    Ok((found.into_iter().map(|(s, _)| s).collect(), unreadable))
}

/// Whether what follows a log's name makes a rotation of it: `.` or `-` and then a digit, as
/// every rotator names them (`.1`, `.2.gz`, `-20261122`, `.20261122-083000.gz`, savelog's `.0`).
/// Other names beside the log (`mail.log.bak`, `mail.log-other`) are not its history: reading
/// them as such could record rows twice or from another server.
pub fn is_rotation_suffix(rest: &str) -> bool {
    let b = rest.as_bytes();
    b.len() >= 2 && matches!(b[0], b'.' | b'-') && b[1].is_ascii_digit()
}

/// `.3.gz` -> 3; other suffixes (dates) -> 0.
fn rotation_number(rest: &str) -> u64 {
    let rest = rest.strip_suffix(".gz").unwrap_or(rest);
    rest.strip_prefix('.')
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn oldest_first_by_time_then_number() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for (name, age) in [
            ("mail.log", 0),
            ("mail.log.1", 1),
            ("mail.log.2.gz", 2),
            ("mail.log.3.gz", 3),
            ("mail.log.4.gz", 3),
            ("mail.log-20261120", 5),
            ("mail.log.xz.tmp", 9),
            ("mail.log.5.xz", 6),
            ("mail.logger", 7),
            ("mail.err", 8),
            ("mail.log.bak", 9),
            ("mail.log-other", 9),
        ] {
            let p = d.join(name);
            std::fs::write(&p, b"x\n").unwrap();
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(base - Duration::from_secs(age * 3600))
                .unwrap();
        }
        let (found, unreadable) = siblings(&d.join("mail.log")).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|s| s.path.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "mail.log-20261120",
                "mail.log.4.gz",
                "mail.log.3.gz",
                "mail.log.2.gz",
                "mail.log.1"
            ]
        );
        assert_eq!(unreadable, vec![d.join("mail.log.5.xz")]);
    }
}
