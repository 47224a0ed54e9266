//! Checkpoints: where reading stopped in each log file, saved with the length of the output the
//! rows went into, so that a restart resumes exactly there — no line lost, none recorded twice,
//! also after `kill -9` or a power cut at any moment.
//!
//! The file (`state_dir/checkpoint.json`) is replaced atomically: written to a temporary file,
//! fsynced, renamed over the old one, and the directory fsynced, so it is always either the old
//! or the new version, whole.
//!
//! A batch of rows is committed in this order (see `store::csv`, which runs it for the committer):
//! 1. the checkpoint is written describing the state *after* the batch: each file's offset
//!    before and after, and the CSV length before and after;
//! 2. the rows are appended to the CSV and fsynced.
//!
//! On start, the CSV's identity (device and inode) and actual length say which of the two states
//! is true: the same file at the "after" length, the batch landed; at the "before" length, it
//! did not and its lines are read again; in between, it was torn by a crash, the partial rows are
//! cut off and the lines read again. Anything else (the file moved away, replaced, shortened or
//! grown by someone else) cannot prove the batch landed, so its lines are read again into the
//! file now at the path: a row may then be in two files, never in none. The position is thus
//! always recorded together with the rows it accounts for.
//!
//! Entries are forgotten once their file has not been seen on disk for [`FORGET_AFTER_SECS`] of
//! the daemon's running time (a monotonic clock, carried across restarts as `unseen_secs`): a
//! wall clock that jumps (a VM resumed, NTP fixing a clock without a battery) must never make
//! the daemon forget what it read, or rotated history would be recorded again.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::source::fingerprint::Fingerprint;
use crate::source::journal::JournalPos;

/// The checkpoint file's name inside `state_dir`.
pub const FILE_NAME: &str = "checkpoint.json";
/// The format version this program writes and reads.
pub const VERSION: u32 = 1;
/// Entries for files not seen on disk for this long (of running time) are dropped.
pub const FORGET_AFTER_SECS: u64 = 14 * 24 * 3600;

/// Where reading stopped in one file (one fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    /// The file's identity.
    pub fingerprint: Fingerprint,
    /// The name it was last read under (for people reading the checkpoint).
    pub path: PathBuf,
    /// Offset before the batch this checkpoint describes.
    pub offset_before: u64,
    /// Offset just past the last line whose rows are in the output, once the batch landed.
    pub offset: u64,
    /// For how long (seconds of the daemon's running time) the file has not been seen on disk.
    /// Older checkpoints' wall-clock `last_seen` is ignored (read as 0: seen now).
    #[serde(default)]
    pub unseen_secs: u64,
    /// Read to its end and closed for good: a rotated file that is never read again.
    #[serde(default)]
    pub complete: bool,
}

/// The output the rows went to and its length around the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputPosition {
    /// The CSV file.
    pub path: PathBuf,
    /// Its length before the batch.
    pub len_before: u64,
    /// Its length once the batch landed.
    pub len_after: u64,
    /// Its device and inode (0 in checkpoints written before they were recorded, and for
    /// standard output): the same length in another file proves nothing.
    #[serde(default)]
    pub dev: u64,
    /// See `dev`.
    #[serde(default)]
    pub ino: u64,
}

/// Where reading stopped in one journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalPosition {
    /// Which journal: `system`, or the directory or file configured.
    pub source: String,
    /// The position before the batch this checkpoint describes (`None`: the batch was the
    /// first read from this journal).
    pub before: Option<JournalPos>,
    /// The last entry whose rows are in the output, once the batch landed.
    pub after: JournalPos,
}

/// The checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version.
    pub version: u32,
    /// The output (the intrusion record).
    pub output: OutputPosition,
    /// The logins record, when one is kept (absent from checkpoints written before it was).
    /// A batch landed only when both outputs show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logins: Option<OutputPosition>,
    /// Every file known, by fingerprint.
    pub files: Vec<FilePosition>,
    /// Every journal read (absent from checkpoints written before journals were read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journals: Vec<JournalPosition>,
}

/// Why checkpoints could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error(
        "checkpoint {path}: {source}{}",
        crate::state::access_hint(path, source)
    )]
    Io {
        /// The checkpoint file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file is not a checkpoint this version understands.
    #[error(
        "checkpoint {path} is unreadable ({message}); move it aside to start over (rows already in the output would then be recorded again)"
    )]
    Corrupt {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Where to resume one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Offset just past the last line accounted for.
    pub offset: u64,
    /// The file was read to its end and closed for good.
    pub complete: bool,
}

/// Positions as the source needs them, by fingerprint.
pub type Positions = BTreeMap<Fingerprint, Pos>;

/// The checkpoint store in a state directory.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The store in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Store {
            path: state_dir.join(FILE_NAME),
        }
    }

    /// The checkpoint file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the checkpoint; `None` when there is none yet (the first start).
    pub fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let cp: Checkpoint =
            serde_json::from_slice(&text).map_err(|e| CheckpointError::Corrupt {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        if cp.version != VERSION {
            return Err(CheckpointError::Corrupt {
                path: self.path.clone(),
                message: format!(
                    "version {} (this program reads version {VERSION})",
                    cp.version
                ),
            });
        }
        Ok(Some(cp))
    }

    /// Replaces the checkpoint atomically and durably.
    pub fn save(&self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        let mut bytes = serde_json::to_vec_pretty(cp).expect("a checkpoint always serialises");
        bytes.push(b'\n');
        replace_file(&self.path, &bytes, true).map_err(|source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Replaces `path` with `bytes` so that readers see the old file or the new one, whole: a
/// temporary file beside it (mode 0640), renamed over it. `durable` adds the fsyncs (file, then
/// directory) that make the new version survive a power cut, for files whose loss costs more
/// than time (the checkpoint).
pub fn replace_file(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&tmp)?;
    f.write_all(bytes)?;
    if durable {
        f.sync_all()?;
    }
    drop(f);
    std::fs::rename(&tmp, path)?;
    if durable {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What is at the output's path at a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputState {
    /// Its device.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
    /// Its length.
    pub len: u64,
    /// Whether it is a regular file (a FIFO or a device has no length to judge by).
    pub regular: bool,
}

impl OutputState {
    /// What is at `path` now (`None`: nothing, or not readable).
    pub fn of(path: &Path) -> Option<OutputState> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| OutputState {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            regular: m.is_file(),
        })
    }
}

/// What a restart resumes from, decided from a checkpoint and the output's actual length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Offsets to resume at.
    pub positions: Positions,
    /// Names last read, per fingerprint.
    pub paths: BTreeMap<Fingerprint, PathBuf>,
    /// How long each file had not been seen on disk, per fingerprint.
    pub unseen: BTreeMap<Fingerprint, std::time::Duration>,
    /// Where to resume each journal, by source: after the entry, or (`None`) from the head,
    /// when the batch lost was the first read from that journal. A journal absent here starts
    /// afresh.
    pub journals: BTreeMap<String, Option<JournalPos>>,
    /// When set, the output must be cut back to this length first (a torn batch, or one that
    /// landed in this output but not in the logins record).
    pub truncate_output_to: Option<u64>,
    /// The same for the logins record.
    pub truncate_logins_to: Option<u64>,
    /// What was decided, for the log.
    pub note: String,
}

impl Checkpoint {
    /// Decides where to resume given what is at the outputs' paths now (the intrusion record,
    /// and the logins record if the checkpoint names one): their device, inode and length
    /// (`None`: nothing is there). The last batch landed when every output shows it; when one
    /// does not, the batch's lines are read again, and an output that holds the batch (whole
    /// or torn) is cut back to its length before it, so that no row is in it twice.
    pub fn recover(
        &self,
        actual: Option<OutputState>,
        logins_actual: Option<OutputState>,
    ) -> Recovery {
        let (main, mut note) = judge(&self.output, actual, "output");
        let logins = self.logins.as_ref().map(|l| {
            let (v, n) = judge(l, logins_actual, "logins record");
            (l, v, n)
        });
        let landed = |v: Verdict| matches!(v, Verdict::Landed | Verdict::Unjudged);
        let after = landed(main) && logins.as_ref().is_none_or(|(_, v, _)| landed(*v));
        let cut = |out: &OutputPosition, v: Verdict| match v {
            Verdict::Torn => Some(out.len_before),
            Verdict::Landed if !after && out.len_after > out.len_before => Some(out.len_before),
            _ => None,
        };
        let truncate = cut(&self.output, main);
        let truncate_logins = logins.as_ref().and_then(|(l, v, _)| cut(l, *v));
        if let Some((_, v, n)) = &logins
            && (!landed(*v) || !after)
        {
            note = format!("{note}; {n}");
            if main == Verdict::Landed && truncate.is_some() {
                note.push_str(
                    "; the batch in the output is cut off too, so that it is written once",
                );
            }
        }
        let positions = self
            .files
            .iter()
            .map(|f| {
                let offset = if after { f.offset } else { f.offset_before };
                // A file marked complete by the lost batch is not complete yet.
                let complete = f.complete && (after || f.offset == f.offset_before);
                (f.fingerprint, Pos { offset, complete })
            })
            .collect();
        let paths = self
            .files
            .iter()
            .map(|f| (f.fingerprint, f.path.clone()))
            .collect();
        let unseen = self
            .files
            .iter()
            .map(|f| (f.fingerprint, std::time::Duration::from_secs(f.unseen_secs)))
            .collect();
        let journals = self
            .journals
            .iter()
            .map(|j| {
                let pos = if after {
                    Some(j.after.clone())
                } else {
                    j.before.clone()
                };
                (j.source.clone(), pos)
            })
            .collect();
        Recovery {
            positions,
            paths,
            unseen,
            journals,
            truncate_output_to: truncate,
            truncate_logins_to: truncate_logins,
            note,
        }
    }
}

/// What an output's state says about the last batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The batch is in it whole.
    Landed,
    /// Not a regular file (`/dev/null`, a FIFO): nothing to judge, and nothing to cut.
    Unjudged,
    /// The batch never reached it.
    NotLanded,
    /// A crash tore the batch: part of it is there.
    Torn,
    /// Someone else changed it (moved, replaced, grown, shortened): nothing is proven.
    Unprovable,
}

/// Judges one output (`what` names it in the note) from what is at its path now.
fn judge(out: &OutputPosition, actual: Option<OutputState>, what: &str) -> (Verdict, String) {
    let recorded_id = (out.dev, out.ino) != (0, 0);
    match actual {
        None => (
            Verdict::Unprovable,
            format!(
                "the {what} is missing (moved away?): a new one is started and the last batch's lines are read again into it"
            ),
        ),
        Some(a) if !a.regular => (
            Verdict::Unjudged,
            format!("the {what} is not a regular file: nothing to check"),
        ),
        // The inode decides: device numbers are not stable across reboots on some
        // filesystems (btrfs subvolumes, NFS), and a reboot is when this matters.
        Some(a) if recorded_id && a.ino != out.ino => (
            Verdict::Unprovable,
            format!(
                "the {what} is another file than the one written last (moved away and replaced?): the last batch's lines are read again into it"
            ),
        ),
        Some(a) if a.len == out.len_after => {
            (Verdict::Landed, format!("the last batch is in the {what}"))
        }
        Some(a) if a.len == out.len_before => (
            Verdict::NotLanded,
            format!("the last batch never reached the {what}: its lines are read again"),
        ),
        Some(a) if a.len > out.len_before && a.len < out.len_after => (
            Verdict::Torn,
            format!(
                "the last batch was torn by a crash in the {what} ({} of {} bytes): cutting it off, its lines are read again",
                a.len - out.len_before,
                out.len_after - out.len_before
            ),
        ),
        Some(a) if a.len > out.len_after => (
            Verdict::Unprovable,
            format!(
                "the {what} grew beyond the checkpoint (another writer appended to it?): the last batch's lines are read again"
            ),
        ),
        Some(_) => (
            Verdict::Unprovable,
            format!(
                "the {what} is shorter than recorded (was it truncated?): the last batch's lines are read again"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> Checkpoint {
        Checkpoint {
            version: VERSION,
            output: OutputPosition {
                path: "/x.csv".into(),
                len_before: 100,
                len_after: 180,
                dev: 9,
                ino: 42,
            },
            logins: None,
            files: vec![
                FilePosition {
                    fingerprint: Fingerprint(1),
                    path: "/var/log/mail.log".into(),
                    offset_before: 1000,
                    offset: 2000,
                    unseen_secs: 5,
                    complete: false,
                },
                FilePosition {
                    fingerprint: Fingerprint(2),
                    path: "/var/log/mail.log.1".into(),
                    offset_before: 7,
                    offset: 7,
                    unseen_secs: 5,
                    complete: true,
                },
            ],
            journals: vec![
                JournalPosition {
                    source: "system".into(),
                    before: Some(jpos("c1", 10)),
                    after: jpos("c2", 20),
                },
                JournalPosition {
                    source: "/j".into(),
                    before: None,
                    after: jpos("d1", 30),
                },
            ],
        }
    }

    fn jpos(cursor: &str, realtime_usec: u64) -> JournalPos {
        JournalPos {
            cursor: cursor.into(),
            realtime_usec,
        }
    }

    #[test]
    fn journals_resume_after_a_landed_batch_and_before_a_lost_one() {
        let c = cp();
        let r = c.recover(same(180), None);
        assert_eq!(r.journals["system"], Some(jpos("c2", 20)));
        assert_eq!(r.journals["/j"], Some(jpos("d1", 30)));
        let r = c.recover(same(100), None);
        assert_eq!(r.journals["system"], Some(jpos("c1", 10)));
        // Its first batch was lost: that journal is read again from its head (not afresh from
        // its tail, which would skip the lost batch's entries).
        assert_eq!(r.journals["/j"], None);
        // A checkpoint written before journals were read has none.
        let old = r#"{"version":1,"output":{"path":"/x","len_before":0,"len_after":0},"files":[]}"#;
        let old: Checkpoint = serde_json::from_str(old).unwrap();
        assert!(old.journals.is_empty());
    }

    /// The same file (dev 9, inode 42) at `len`.
    fn same(len: u64) -> Option<OutputState> {
        Some(OutputState {
            dev: 9,
            ino: 42,
            len,
            regular: true,
        })
    }

    #[test]
    fn a_batch_landed_only_when_both_records_show_it() {
        let mut c = cp();
        c.logins = Some(OutputPosition {
            path: "/logins.csv".into(),
            len_before: 50,
            len_after: 90,
            dev: 9,
            ino: 43,
        });
        let logins = |len| {
            Some(OutputState {
                dev: 9,
                ino: 43,
                len,
                regular: true,
            })
        };
        // Both landed: resume after.
        let r = c.recover(same(180), logins(90));
        assert_eq!(r.positions[&Fingerprint(1)].offset, 2000);
        assert_eq!((r.truncate_output_to, r.truncate_logins_to), (None, None));
        // Failures landed, logins never: both read again, the failures cut off first.
        let r = c.recover(same(180), logins(50));
        assert_eq!(r.positions[&Fingerprint(1)].offset, 1000);
        assert_eq!(
            (r.truncate_output_to, r.truncate_logins_to),
            (Some(100), None)
        );
        assert!(r.note.contains("logins record"), "{}", r.note);
        // Logins torn, failures landed.
        let r = c.recover(same(180), logins(70));
        assert_eq!(r.positions[&Fingerprint(1)].offset, 1000);
        assert_eq!(
            (r.truncate_output_to, r.truncate_logins_to),
            (Some(100), Some(50))
        );
        // Failures never landed (the crash came before them): logins untouched too.
        let r = c.recover(same(100), logins(50));
        assert_eq!(r.positions[&Fingerprint(1)].offset, 1000);
        assert_eq!((r.truncate_output_to, r.truncate_logins_to), (None, None));
        // The logins record moved away: nothing proven there, the failures are cut back and
        // the lines read again (logins into a new file).
        let r = c.recover(same(180), None);
        assert_eq!(r.positions[&Fingerprint(1)].offset, 1000);
        assert_eq!(
            (r.truncate_output_to, r.truncate_logins_to),
            (Some(100), None)
        );
        // The logins record is /dev/null: never judged, never cut.
        let devnull = Some(OutputState {
            dev: 1,
            ino: 3,
            len: 0,
            regular: false,
        });
        let r = c.recover(same(180), devnull);
        assert_eq!(r.positions[&Fingerprint(1)].offset, 2000);
        assert_eq!((r.truncate_output_to, r.truncate_logins_to), (None, None));
        let r = c.recover(same(150), devnull);
        assert_eq!(
            (r.truncate_output_to, r.truncate_logins_to),
            (Some(100), None)
        );
        // A batch without logins (before == after) landed when the failures did.
        c.logins.as_mut().unwrap().len_after = 50;
        let r = c.recover(same(180), logins(50));
        assert_eq!(r.positions[&Fingerprint(1)].offset, 2000);
    }

    #[test]
    fn recovery_follows_the_output_length() {
        let c = cp();
        let r = c.recover(same(180), None);
        assert_eq!(r.positions[&Fingerprint(1)].offset, 2000);
        assert_eq!(r.truncate_output_to, None);
        let r = c.recover(same(100), None);
        assert_eq!(r.positions[&Fingerprint(1)].offset, 1000);
        assert_eq!(r.truncate_output_to, None);
        let r = c.recover(same(150), None);
        assert_eq!(r.positions[&Fingerprint(1)].offset, 1000);
        assert_eq!(r.truncate_output_to, Some(100));
        assert_eq!(
            r.positions[&Fingerprint(2)],
            Pos {
                offset: 7,
                complete: true
            }
        );
        assert_eq!(r.unseen[&Fingerprint(2)].as_secs(), 5);
    }

    #[test]
    fn an_output_that_is_not_exactly_before_or_after_reads_the_batch_again() {
        let c = cp();
        let moved_and_new = Some(OutputState {
            dev: 9,
            ino: 43,
            len: 180,
            regular: true,
        });
        for (actual, what) in [
            (same(500), "longer"),
            (same(10), "shorter"),
            (None, "missing"),
            (moved_and_new, "another file of the after length"),
        ] {
            let r = c.recover(actual, None);
            assert_eq!(r.positions[&Fingerprint(1)].offset, 1000, "{what}");
            assert_eq!(r.truncate_output_to, None, "{what}");
        }
        // Another device number alone (after a reboot, on some filesystems) is the same file.
        let renumbered = Some(OutputState {
            dev: 7,
            ino: 42,
            len: 180,
            regular: true,
        });
        assert_eq!(
            c.recover(renumbered, None).positions[&Fingerprint(1)].offset,
            2000
        );
        // A FIFO or device has no length to judge by: the batch is taken as delivered.
        let fifo = Some(OutputState {
            dev: 9,
            ino: 42,
            len: 0,
            regular: false,
        });
        assert_eq!(
            c.recover(fifo, None).positions[&Fingerprint(1)].offset,
            2000
        );
        // A checkpoint from before identities were recorded decides from the length alone.
        let mut old = cp();
        (old.output.dev, old.output.ino) = (0, 0);
        assert_eq!(
            old.recover(moved_and_new, None).positions[&Fingerprint(1)].offset,
            2000
        );
    }

    #[test]
    fn save_and_load_round_trip_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.load().unwrap(), None);
        store.save(&cp()).unwrap();
        assert_eq!(store.load().unwrap(), Some(cp()));
        assert!(!dir.path().join("checkpoint.tmp").exists());
        std::fs::write(store.path(), b"{not json").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(
            e.contains("checkpoint.json") && e.contains("move it aside"),
            "{e}"
        );
    }
}
