//! What the reporter remembers across restarts: where the last report's window ended, so the
//! next one starts there (no period skipped or repeated).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Window;

/// The window used when there was no report before.
pub const FIRST_WINDOW_SECS: i64 = 24 * 3600;

/// `state_dir/report-state.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportState {
    /// End of the last report's window (seconds since the epoch).
    pub last_to: Option<i64>,
}

impl ReportState {
    /// Reads the state (none yet: default).
    pub fn load(state_dir: &Path) -> ReportState {
        std::fs::read(state_dir.join("report-state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Saves it atomically.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).expect("serialisable");
        crate::checkpoint::replace_file(&state_dir.join("report-state.json"), &bytes, false)
    }

    /// The window of the next default report: from the last one's end to `now`.
    ///
    /// ```
    /// # use maillogsentinel::report::state::ReportState;
    /// let s = ReportState { last_to: Some(1000) };
    /// assert_eq!((s.default_window(1000).from, s.default_window(5000).from), (1000, 1000));
    /// assert_eq!(ReportState::default().default_window(100_000).from, 100_000 - 86_400);
    /// ```
    pub fn default_window(&self, now: i64) -> Window {
        // From the last report's end (an empty window when that was this very second; never
        // after now).
        let from = self.last_to.map_or(now - FIRST_WINDOW_SECS, |t| t.min(now));
        Window { from, to: now }
    }
}
