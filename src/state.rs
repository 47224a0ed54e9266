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
