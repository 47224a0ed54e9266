//! Change notifications (inotify through the notify crate) routed to the tailers that care.
//!
//! The parent directory of each log is watched, not the file: rotation replaces the file, and
//! a watch on a file follows its inode into `mail.log.1`. An event for the log's own name
//! wakes its tailer; an event for a sibling name (`mail.log.1`, `mail.log-2026...`) also asks
//! it to look at the siblings. Where watching fails (no inotify, too many watches, a network
//! filesystem), the tailers' polling carries on alone, after one warning. Access events (open,
//! read, close without writing) are ignored: they say nothing new, and the daemon makes them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::source::tailer::Wake;

struct Route {
    dir: PathBuf,
    name: OsString,
    tx: std_mpsc::Sender<Wake>,
}

/// Whether an event can mean new content or a new file. Opens, reads and closes without writing
/// are excluded: the daemon's own reads of the siblings make them, and waking on them made a
/// loop (read -> event -> rescan -> read) that kept an idle daemon busy for ever.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Routes directory events to tailers.
pub struct Watcher {
    inner: Option<RecommendedWatcher>,
    routes: Arc<Mutex<Vec<Route>>>,
    watched: Vec<PathBuf>,
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Watcher {
    /// A watcher that never wakes anyone: polling alone (`[sources] notify = false`).
    pub fn disabled() -> Self {
        Watcher {
            inner: None,
            routes: Arc::default(),
            watched: Vec::new(),
        }
    }

    /// A watcher; without inotify it only warns, and polling does the work.
    pub fn new() -> Self {
        let routes: Arc<Mutex<Vec<Route>>> = Arc::default();
        let r = routes.clone();
        let handler = move |res: notify::Result<Event>| {
            let Ok(event) = res else { return };
            if !changes_content(&event.kind) {
                return;
            }
            let routes = r.lock().expect("routes lock");
            for path in &event.paths {
                let (dir, Some(name)) = (dir_of(path), path.file_name()) else {
                    continue;
                };
                for route in routes.iter().filter(|route| route.dir == dir) {
                    let wake = if name == route.name.as_os_str() {
                        Some(Wake::Changed)
                    } else {
                        let (n, base) = (name.as_encoded_bytes(), route.name.as_encoded_bytes());
                        (n.len() > base.len() + 1
                            && n.starts_with(base)
                            && matches!(n[base.len()], b'.' | b'-'))
                        .then_some(Wake::Siblings)
                    };
                    if let Some(w) = wake {
                        let _ = route.tx.send(w);
                    }
                }
            }
        };
        let inner = match notify::recommended_watcher(handler) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("file change notifications unavailable ({e}); polling instead");
                None
            }
        };
        Watcher {
            inner,
            routes,
            watched: Vec::new(),
        }
    }

    /// Wakes `tx` on changes to `path` or its rotated siblings.
    pub fn add(&mut self, path: &Path, tx: std_mpsc::Sender<Wake>) {
        let dir = dir_of(path);
        let Some(name) = path.file_name() else { return };
        self.routes.lock().expect("routes lock").push(Route {
            dir: dir.clone(),
            name: name.to_owned(),
            tx,
        });
        if self.watched.contains(&dir) {
            return;
        }
        if let Some(w) = &mut self.inner {
            match w.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => self.watched.push(dir),
                Err(e) => tracing::warn!(
                    dir = %dir.display(),
                    "cannot watch for changes ({e}); polling this directory instead"
                ),
            }
        }
    }

    /// Stops waking for `path`.
    pub fn remove(&mut self, path: &Path) {
        let dir = dir_of(path);
        let name = path.file_name().map(|n| n.to_owned());
        let mut routes = self.routes.lock().expect("routes lock");
        routes.retain(|r| !(r.dir == dir && Some(&r.name) == name.as_ref()));
        let still_used = routes.iter().any(|r| r.dir == dir);
        drop(routes);
        if !still_used && let Some(i) = self.watched.iter().position(|d| *d == dir) {
            self.watched.remove(i);
            if let Some(w) = &mut self.inner {
                let _ = w.unwatch(&dir);
            }
        }
    }
}

impl Default for Watcher {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};

    #[test]
    fn reads_wake_no_one_writes_and_renames_do() {
        for quiet in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            assert!(!changes_content(&quiet), "{quiet:?}");
        }
        for change in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Create(CreateKind::File),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert!(changes_content(&change), "{change:?}");
        }
    }
}
