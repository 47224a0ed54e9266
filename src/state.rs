//! The files the daemon keeps in `state_dir` beside its checkpoint, named in one place: the
//! sink writes them, the alerts thread writes its record, reports read them all.

use std::path::{Path, PathBuf};

/// Failures of the server's own authentication side and relays' refusals (time, program,
/// client or relay, reason, kind), for reports.
pub const BACKEND_LOG: &str = "auth-backend-failures.csv";

/// Dovecot's verdicts on attempts (time, address, username, `known` or `unknown`), for reports.
pub const VERDICT_LOG: &str = "auth-verdicts.csv";

/// The compromise alerts' record.
pub const ALERTS_CSV: &str = "alerts.csv";

/// Left by a `scan` into a store that held no positions yet: the daemon's first start then
/// still applies `backfill` to every file the scan did not read (and removes it).
pub const SCANNED_BEFORE_START: &str = "scanned-before-first-start";

/// `name` in `state_dir`.
pub fn path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(name)
}

/// Appends `rows` to a record kept in the state directory (the alerts', the responder's),
/// creating it with mode 0640 and `header` first; flushed and synced before it returns, so a
/// row the caller goes on from survives a crash.
pub fn append_csv<R>(
    path: &Path,
    header: &[&str],
    rows: impl IntoIterator<Item = R>,
) -> std::io::Result<()>
where
    R: IntoIterator,
    R::Item: AsRef<[u8]>,
{
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let new = !path.exists();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)?;
    let mut w = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(std::io::BufWriter::new(file));
    if new {
        w.write_record(header).map_err(std::io::Error::other)?;
    }
    for row in rows {
        w.write_record(row).map_err(std::io::Error::other)?;
    }
    let mut file = w
        .into_inner()
        .map_err(|e| e.into_error())?
        .into_inner()
        .map_err(|e| e.into_error())?;
    file.flush()?;
    file.sync_data()
}
