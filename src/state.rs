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

/// What to do about a permission error on `path`: which user needs access and the command that
/// gives it, as text to append to the error (empty for any other error). Said at print time,
/// from the owners on disk and this process's user, so that it names who actually differs (a
/// record `scan` left as root, a state directory copied by hand). It never proposes giving a
/// file of another service user away: that user should run the command instead.
pub fn access_hint(path: &Path, error: &std::io::Error) -> String {
    use std::os::unix::fs::MetadataExt;
    if error.kind() != std::io::ErrorKind::PermissionDenied {
        return String::new();
    }
    let name = |uid: u32| {
        nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map_or_else(|| format!("uid {uid}"), |u| u.name)
    };
    let me = nix::unistd::Uid::effective().as_raw();
    let user = name(me);
    // The file itself, or else the directory it would be created in.
    let (at, meta) = match std::fs::metadata(path) {
        Ok(m) => (path, m),
        Err(_) => {
            let Some(dir) = path.parent() else {
                return String::new();
            };
            match std::fs::metadata(dir) {
                Ok(m) => (dir, m),
                Err(_) => {
                    return format!(
                        " ({} does not exist: create it for {user} with `sudo install -d -o {user} -m 0750 {}`)",
                        dir.display(),
                        dir.display()
                    );
                }
            }
        }
    };
    let what = if meta.is_dir() { "directory" } else { "file" };
    match meta.uid() {
        owner if owner == me => format!(
            " ({} is {user}'s, but its mode {:o} does not let it: `chmod u+rw{} {}`)",
            at.display(),
            meta.mode() & 0o7777,
            if meta.is_dir() { "x" } else { "" },
            at.display()
        ),
        0 => format!(
            " (the {what} {} belongs to root, and this runs as {user}: `sudo chown {user}: {}`)",
            at.display(),
            at.display()
        ),
        owner => {
            let owner = name(owner);
            format!(
                " (the {what} {} belongs to {owner}, and this runs as {user}: run the command as {owner}, `sudo -u {owner} maillogsentinel ...`)",
                at.display()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_permission_error_gets_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let e = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(access_hint(dir.path(), &e), "");
    }

    #[test]
    fn a_permission_error_names_the_owner_and_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("intrusions.csv");
        std::fs::write(&file, "").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o440)).unwrap();
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let hint = access_hint(&file, &e);
        // This process owns the file: its mode is what stands in the way.
        assert!(hint.contains("mode 440"), "{hint}");
        assert!(
            hint.contains(&format!("chmod u+rw {}", file.display())),
            "{hint}"
        );
        // A file not there yet: its directory is what must be writable.
        let hint = access_hint(&dir.path().join("new.csv"), &e);
        assert!(hint.contains("chmod u+rwx"), "{hint}");
    }
}
