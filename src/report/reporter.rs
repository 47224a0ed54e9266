//! The daemon's reporter actor: mails a report on the configured schedule and on SIGUSR1,
//! covering the time since the last one (remembered in `state_dir`, so a restart neither skips
//! nor repeats a period), and retries undelivered reports from the outbox with backoff.
//!
//! It never holds up the pipeline: building and sending run on blocking threads, and the
//! reader and writer do not wait for it.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Local};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::Window;
use super::mail::MailSettings;
use super::state::ReportState;

/// What the reporter needs from the configuration (sent again on reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReporterSettings {
    /// Cron schedule with seconds ("" for none).
    pub schedule: String,
    /// Recipients and transport; `None`: nothing is mailed.
    pub mail: Option<MailSettings>,
    /// The records reported on.
    pub records: super::Records,
    /// Where the report state, index and outbox live.
    pub state_dir: PathBuf,
    /// This host's name (`[sources] server`): the verdict names it when the window holds
    /// no failure to name a server by.
    pub this_host: String,
    /// First wait before the outbox is tried again (doubling up to [`MAX_RETRY`]).
    pub retry: Duration,
}

/// The wall clock (tests give a paused one).
pub type Clock = Arc<dyn Fn() -> DateTime<Local> + Send + Sync>;

/// Makes and mails one report for a window; `Err` when it was queued instead of sent.
pub type Deliver = Arc<
    dyn Fn(ReporterSettings, Window) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// Longest wait between outbox retries.
pub const MAX_RETRY: Duration = Duration::from_secs(1800);

/// How long until the schedule next fires after `now`.
pub fn next_delay(schedule: &str, now: DateTime<Local>) -> Option<Duration> {
    let cron = crate::config::parse_schedule(schedule).ok()??;
    let next = cron.find_next_occurrence(&now, false).ok()?;
    (next - now).to_std().ok()
}

/// The real delivery: build the report on a blocking thread and mail it (queued on failure).
pub fn mail_delivery() -> Deliver {
    Arc::new(|s: ReporterSettings, w: Window| {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mail = s.mail.as_ref().ok_or("no recipients")?;
                let report = super::build(
                    &s.records,
                    &s.state_dir,
                    w,
                    true,
                    super::Scope {
                        server: None,
                        this_host: &s.this_host,
                    },
                )
                .map_err(|e| e.to_string())?;
                super::mail::send(mail, &report, Some(&s.state_dir)).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?
        })
    })
}

/// Runs until cancelled. `trigger` is SIGUSR1.
pub async fn run(
    mut settings: watch::Receiver<ReporterSettings>,
    mut trigger: mpsc::Receiver<()>,
    cancel: CancellationToken,
    clock: Clock,
    deliver: Deliver,
) {
    let mut retry = settings.borrow().retry;
    let mut waiting = outbox_waiting(&settings.borrow());
    loop {
        let s = settings.borrow().clone();
        let scheduled = if s.mail.is_some() {
            next_delay(&s.schedule, clock())
        } else {
            None
        };
        let far = Duration::from_secs(365 * 24 * 3600);
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = settings.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep(scheduled.unwrap_or(far)), if scheduled.is_some() => {
                waiting |= fire(&s, &clock, &deliver, "scheduled").await;
            }
            t = trigger.recv() => {
                if t.is_none() {
                    break;
                }
                if s.mail.is_none() {
                    tracing::warn!("report requested (SIGUSR1) but [report] to names no recipient; nothing sent");
                    continue;
                }
                waiting |= fire(&s, &clock, &deliver, "requested by SIGUSR1").await;
            }
            _ = tokio::time::sleep(retry), if waiting && s.mail.is_some() => {
                let (dir, mail) = (s.state_dir.clone(), s.mail.clone().expect("checked"));
                let (sent, left) = tokio::task::spawn_blocking(move || super::mail::flush_outbox(&dir, &mail))
                    .await
                    .unwrap_or((0, 1));
                if sent > 0 {
                    tracing::info!(sent, "queued report(s) delivered");
                }
                waiting = left > 0;
                retry = if waiting { (retry * 2).min(MAX_RETRY) } else { s.retry };
            }
        }
    }
}

/// Whether mails wait in the outbox to be retried (not those refused for good).
fn outbox_waiting(s: &ReporterSettings) -> bool {
    super::mail::outbox_counts(&s.state_dir).0 > 0
}

/// Makes one report for the time since the last one; returns whether one now waits in the
/// outbox.
async fn fire(s: &ReporterSettings, clock: &Clock, deliver: &Deliver, why: &str) -> bool {
    let now = clock().timestamp();
    let state = ReportState::load(&s.state_dir);
    let window = state.default_window(now);
    let result = deliver(s.clone(), window).await;
    // Sent or queued, this period is reported: the next one starts here.
    if let Err(e) = (ReportState {
        last_to: Some(window.to),
    })
    .save(&s.state_dir)
    {
        tracing::error!("cannot save the report state: {e}");
    }
    match result {
        Ok(()) => {
            tracing::info!(from = window.from, to = window.to, "report sent ({why})");
            false
        }
        Err(e) => {
            tracing::error!("report not sent ({why}): {e}");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::sync::Mutex;

    #[test]
    fn next_delay_follows_the_cron() {
        let t = Local.with_ymd_and_hms(2026, 11, 22, 7, 59, 30).unwrap();
        assert_eq!(next_delay("0 0 8 * * *", t), Some(Duration::from_secs(30)));
        let t = Local.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap();
        assert_eq!(
            next_delay("0 0 8 * * *", t),
            Some(Duration::from_secs(24 * 3600))
        );
        assert_eq!(next_delay("", t), None);
    }

    /// The schedule with tokio's paused clock: reports fire at the right times, cover
    /// consecutive windows, and SIGUSR1 adds one at once.
    #[tokio::test(start_paused = true)]
    async fn reports_fire_on_schedule_and_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let base = Local.with_ymd_and_hms(2026, 11, 22, 7, 55, 0).unwrap();
        let start = tokio::time::Instant::now();
        let clock: Clock =
            Arc::new(move || base + chrono::Duration::from_std(start.elapsed()).unwrap());
        let windows: Arc<Mutex<Vec<(Window, i64)>>> = Arc::default();
        let seen = windows.clone();
        let c2 = clock.clone();
        let deliver: Deliver = Arc::new(move |_s, w| {
            seen.lock().unwrap().push((w, c2().timestamp()));
            Box::pin(async { Ok(()) })
        });
        let settings = ReporterSettings {
            schedule: "0 0 * * * *".into(), // every hour on the hour
            mail: Some(MailSettings {
                to: vec!["postmaster@example.org".parse().unwrap()],
                from: "sentinel@example.org".parse().unwrap(),
                subject_prefix: String::new(),
                transport: super::super::mail::Transport::Sendmail,
            }),
            records: super::super::Records::Csv {
                failures: dir.path().join("out.csv"),
                logins: None,
            },
            state_dir: dir.path().to_path_buf(),
            this_host: "mx".into(),
            retry: Duration::from_secs(30),
        };
        let (_stx, srx) = watch::channel(settings);
        let (ttx, trx) = mpsc::channel(1);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(srx, trx, cancel.clone(), clock.clone(), deliver));
        // 07:55 -> nothing until 08:00.
        tokio::time::sleep(Duration::from_secs(4 * 60)).await;
        assert!(windows.lock().unwrap().is_empty());
        tokio::time::sleep(Duration::from_secs(2 * 60)).await; // 08:01
        // SIGUSR1 at 08:01, then 09:00 and 10:00.
        ttx.send(()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2 * 3600)).await; // 10:01
        cancel.cancel();
        task.await.unwrap();
        let got = windows.lock().unwrap().clone();
        let at = |h: u32, m: u32| {
            Local
                .with_ymd_and_hms(2026, 11, 22, h, m, 0)
                .unwrap()
                .timestamp()
        };
        let fired: Vec<i64> = got.iter().map(|(_, t)| *t).collect();
        assert_eq!(fired, vec![at(8, 0), at(8, 1), at(9, 0), at(10, 0)]);
        // Consecutive windows: each starts where the last ended; the first covers 24 h.
        assert_eq!(
            got[0].0,
            Window {
                from: at(8, 0) - 24 * 3600,
                to: at(8, 0)
            }
        );
        for pair in got.windows(2) {
            assert_eq!(pair[1].0.from, pair[0].0.to);
        }
        // A restart resumes from the saved state.
        assert_eq!(ReportState::load(dir.path()).last_to, Some(at(10, 0)));
    }
}
