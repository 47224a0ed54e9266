//! Repeated warnings held to a few a minute for each kind, the rest counted and summed up in
//! one line ("... 250 more in the last minute"), and problems said again when they are over.
//!
//! An auth backend down during an attack logs a warning per failed login, hundreds a minute;
//! a DNS server timing out, one per address. The first [`PER_MINUTE`] of each kind in a minute
//! are logged as they come, then they are only counted; the count is logged when the minute is
//! over (at the next warning of that kind, or when the daemon calls [`flush`] every few
//! seconds). Nothing is dropped without being counted: every event is still counted in the
//! statistics and, where it is a row, recorded.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Warnings of one kind logged one by one in a minute.
pub const PER_MINUTE: u64 = 5;

const MINUTE: Duration = Duration::from_secs(60);

/// The window: a minute (`MAILLOGSENTINEL_TEST_RATE_WINDOW`, a duration such as `2s`, for the
/// tests that show the summing up; never set in production).
fn window() -> Duration {
    static WINDOW: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *WINDOW.get_or_init(|| {
        std::env::var("MAILLOGSENTINEL_TEST_RATE_WINDOW")
            .ok()
            .and_then(|v| humantime::parse_duration(&v).ok())
            .unwrap_or(MINUTE)
    })
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    shown: u64,
    held: u64,
}

/// The state of every kind, shared by every thread.
#[derive(Debug)]
pub struct Limiter {
    kinds: Mutex<BTreeMap<&'static str, Window>>,
    problems: Mutex<BTreeMap<&'static str, bool>>,
    window: Duration,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            kinds: Mutex::default(),
            problems: Mutex::default(),
            window: MINUTE,
        }
    }
}

static GLOBAL: std::sync::OnceLock<Limiter> = std::sync::OnceLock::new();

fn global() -> &'static Limiter {
    GLOBAL.get_or_init(|| Limiter {
        window: window(),
        ..Limiter::default()
    })
}

/// Whether one more warning of `kind` may be logged now (see the module's documentation).
pub fn allow(kind: &'static str) -> bool {
    global().allow_at(kind, Instant::now())
}

/// Logs how many warnings of each kind were held back in minutes that are over.
pub fn flush() {
    global().flush_at(Instant::now());
}

/// Notes that the problem `kind` is going on; returns whether it is new (to be said).
pub fn problem(kind: &'static str) -> bool {
    global().problem(kind)
}

/// Notes that the problem `kind` is over; returns whether it had been said (so is to be
/// said over).
pub fn resolved(kind: &'static str) -> bool {
    global().resolved(kind)
}

impl Limiter {
    /// [`allow`] at `now`.
    pub fn allow_at(&self, kind: &'static str, now: Instant) -> bool {
        let mut kinds = self.kinds.lock().expect("limiter lock");
        let w = kinds.entry(kind).or_insert(Window {
            started: now,
            shown: 0,
            held: 0,
        });
        if now.duration_since(w.started) >= self.window {
            say_held(kind, w.held, self.window);
            *w = Window {
                started: now,
                shown: 0,
                held: 0,
            };
        }
        if w.shown < PER_MINUTE {
            w.shown += 1;
            true
        } else {
            w.held += 1;
            false
        }
    }

    /// [`flush`] at `now`; returns how many were said held back, in all.
    pub fn flush_at(&self, now: Instant) -> u64 {
        let mut kinds = self.kinds.lock().expect("limiter lock");
        let mut said = 0;
        for (kind, w) in kinds.iter_mut() {
            if w.held > 0 && now.duration_since(w.started) >= self.window {
                say_held(kind, w.held, self.window);
                said += w.held;
                *w = Window {
                    started: now,
                    shown: 0,
                    held: 0,
                };
            }
        }
        said
    }

    /// [`problem`].
    pub fn problem(&self, kind: &'static str) -> bool {
        let mut p = self.problems.lock().expect("limiter lock");
        !std::mem::replace(p.entry(kind).or_default(), true)
    }

    /// [`resolved`].
    pub fn resolved(&self, kind: &'static str) -> bool {
        let mut p = self.problems.lock().expect("limiter lock");
        p.get_mut(kind).is_some_and(|v| std::mem::replace(v, false))
    }
}

fn say_held(kind: &str, held: u64, window: Duration) {
    if held > 0 {
        let span = if window == MINUTE {
            "minute".to_string()
        } else {
            humantime::format_duration(window).to_string()
        };
        tracing::warn!(
            "{kind}: {held} more in the last {span} (not shown one by one; each is counted in the statistics)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_a_minute_then_a_count() {
        let l = Limiter::default();
        let t0 = Instant::now();
        let shown = (0..250)
            .filter(|i| l.allow_at("backend", t0 + Duration::from_millis(*i)))
            .count();
        assert_eq!(shown as u64, PER_MINUTE);
        // Another kind has its own allowance.
        assert!(l.allow_at("dns", t0));
        // Not yet a minute: nothing to say.
        assert_eq!(l.flush_at(t0 + Duration::from_secs(30)), 0);
        assert_eq!(l.flush_at(t0 + MINUTE), 245);
        // Then a new minute: shown again.
        assert!(l.allow_at("backend", t0 + MINUTE + Duration::from_secs(1)));
    }

    #[test]
    fn a_problem_is_said_once_and_its_end_once() {
        let l = Limiter::default();
        assert!(!l.resolved("dns"), "nothing was said");
        assert!(l.problem("dns"));
        assert!(!l.problem("dns"));
        assert!(l.resolved("dns"));
        assert!(!l.resolved("dns"));
    }
}
