//! The daemon (`maillogsentinel run`): starts the pipeline, answers control requests (stop,
//! reload, report), talks to systemd, and stops cleanly.
//!
//! Actors, one per role (mini-redis style): a [`Tailer`] thread per configured log (source and
//! parser: the parser's prefilter runs over the reader's own buffer), the sink's
//! [`Committer`] thread, and this async task for control, statistics and the watchdog. They are
//! joined by a bounded channel of batches. Stopping is a pipeline drain: the tailers are
//! cancelled and drop their senders, the committer sees the channel close, commits what is
//! left, writes the last checkpoint and returns; then the daemon exits.

pub mod control;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Positions;
use crate::config::{Backfill, Config, ConfigError};
use crate::enrich::Enricher;
use crate::pipeline::{CHANNEL_CAPACITY, EventBudget, Heartbeat, ToSink};
use crate::sink::SinkError;
use crate::sink::committer::{CommitError, Committer, SharedJournals, SharedPositions};
use crate::source::journal::follow::Follower;
use crate::source::journal::{JournalPos, JournalStart, JournalUse};
use crate::source::tailer::{Start, Tailer, TailerSettings, Wake};
use crate::stats::Counters;

/// What the daemon is asked to do (the binary turns signals into these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// SIGTERM / SIGINT: drain and stop. A second one stops at once.
    Shutdown,
    /// SIGHUP: re-read the configuration.
    Reload,
    /// SIGUSR1: send a report now.
    Report,
}

/// Why the daemon could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state directory is unusable.
    #[error("state directory {path}: {message}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The alerts' state could not be set up.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The responder could not start (nftables, its record).
    #[error(transparent)]
    Response(#[from] crate::respond::responder::ResponseError),
    /// The sink failed for good.
    #[error("the sink stopped: {0}")]
    Commit(CommitError),
    /// The sink's thread ended without saying why (it panicked).
    #[error(
        "the sink thread ended unexpectedly; rows not yet written will be read again at the next start"
    )]
    SinkGone,
    /// Draining took longer than `shutdown_timeout`.
    #[error(
        "shutdown took longer than {0:?}; stopped without finishing (the checkpoint makes the next start resume correctly)"
    )]
    ShutdownTimeout(Duration),
    /// The enrichment stage could not be set up.
    #[error("enrichment: {0}")]
    Enrich(String),
    /// A second stop request came during the drain.
    #[error(
        "second stop request: stopped at once (the checkpoint makes the next start resume correctly)"
    )]
    Forced,
}

/// A running tailer.
struct TailerHandle {
    path: PathBuf,
    cancel: CancellationToken,
    wake: std_mpsc::Sender<Wake>,
    join: std::thread::JoinHandle<()>,
    heartbeat: Heartbeat,
    gauges: Arc<crate::source::tailer::SourceGauges>,
}

/// The running journal reader.
struct JournalHandle {
    cancel: CancellationToken,
    join: std::thread::JoinHandle<()>,
    heartbeat: Heartbeat,
}

/// Everything the control loop owns.
struct Running {
    report_settings: tokio::sync::watch::Sender<crate::report::reporter::ReporterSettings>,
    enricher: Arc<Enricher>,
    config: Config,
    config_path: Option<PathBuf>,
    tx: Option<mpsc::Sender<ToSink>>,
    tailers: Vec<TailerHandle>,
    /// The journal reader, when the journal is read.
    journal: Option<JournalHandle>,
    /// What `sources.journal = "auto"` chooses at this start, whatever the mode in force (a
    /// reload to "auto" applies it; it holds until restart): (journal, files).
    auto_choice: (bool, bool),
    /// Whether the log files were read before this start (the checkpoint knows them).
    had_files: bool,
    /// Where the running journal reader began.
    journal_origin: Option<JournalStart>,
    watcher: watch::Watcher,
    counters: Arc<Counters>,
    positions: SharedPositions,
    journals: SharedJournals,
    epoch: Instant,
    cancel: CancellationToken,
    committer_heartbeat: Heartbeat,
    /// Failures in flight between the sources and the sink's commit.
    budget: EventBudget,
    /// The store, for `status`.
    store_name: String,
    /// Where `/metrics` is served.
    metrics_at: Option<std::net::SocketAddr>,
    /// The responder's queue, for the control socket's requests (`None`: it is off).
    respond_tx: Option<std::sync::mpsc::SyncSender<crate::respond::responder::Msg>>,
    /// The responder's figures.
    respond_figures: Option<Arc<crate::respond::responder::Figures>>,
}

/// A store opened, where it says to resume, and whether it holds rows.
type Opened = (
    Box<dyn crate::store::Store>,
    Option<crate::store::Recovered>,
    bool,
);

/// Opens the store and reads where to resume. A database that cannot be reached (PostgreSQL
/// down while the mail server boots) is waited for, with backoff, logged once, the watchdog
/// kept fed and stop requests answered (`None`: asked to stop meanwhile); anything else is an
/// error to fix. Opening connects and migrates: blocking work, off the control loop's thread
/// (the PostgreSQL client runs a runtime of its own, which cannot start inside this one).
async fn open_store(
    config: &Config,
    control: &mut mpsc::Receiver<Control>,
) -> Result<Option<Opened>, DaemonError> {
    let mut delay = Duration::from_millis(500);
    let mut said = false;
    loop {
        let opening = config.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut store = crate::store::open(&opening)?;
            let recovered = store.recover()?;
            // Asked only when the answer decides anything (a first start that `scan` did not
            // precede, history not refused): on PostgreSQL it may read the whole record once.
            let scanned =
                crate::state::path(&opening.state_dir, crate::state::SCANNED_BEFORE_START).exists();
            let has_rows = recovered.is_none()
                && !scanned
                && opening.backfill != Backfill::Never
                && store.has_rows();
            Ok::<_, crate::store::StoreError>((store, recovered, has_rows))
        })
        .await
        .map_err(|_| DaemonError::SinkGone)?;
        match r {
            Ok(opened) => {
                if said {
                    tracing::info!("the store can be reached again; starting");
                }
                return Ok(Some(opened));
            }
            Err(e @ crate::store::StoreError::Postgres { .. })
                if e.state() == "postgres:unreachable" =>
            {
                if !said {
                    tracing::error!(
                        "cannot reach the store: {e}; trying again (every 30 s at most), nothing is read meanwhile"
                    );
                    notify::ready("waiting for the store (PostgreSQL cannot be reached)");
                    said = true;
                }
            }
            Err(e) => return Err(e.into()),
        }
        let wait = tokio::time::sleep(delay);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                c = control.recv() => match c {
                    Some(Control::Shutdown) | None => return Ok(None),
                    Some(_) => {}
                },
                _ = tokio::time::sleep(Duration::from_secs(5)) => notify::watchdog(),
            }
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Runs the daemon until a [`Control::Shutdown`] has drained the pipeline.
pub async fn run(
    config_path: Option<PathBuf>,
    config: Config,
    mut control: mpsc::Receiver<Control>,
) -> Result<(), DaemonError> {
    let epoch = Instant::now();
    let _lock = lock_state_dir(&config.state_dir)?;
    let Some((store, recovered, store_has_rows)) = open_store(&config, &mut control).await? else {
        tracing::info!("stopped while waiting for the store");
        return Ok(());
    };
    // Positions a `scan` recorded before the daemon ever ran are kept, but this is still its
    // first start for every other file: `backfill` decides for them.
    let scanned_first = crate::state::path(&config.state_dir, crate::state::SCANNED_BEFORE_START);
    let first_start = recovered.is_none() || scanned_first.exists();
    if recovered.is_some() && first_start {
        tracing::info!(
            "first start after `scan`: the files it read resume where it stopped, the others follow sources.backfill"
        );
    }
    let (positions, journals, paths, unseen) = match recovered {
        Some(rec) => {
            if rec.repaired {
                tracing::warn!(store = %store.describe(), "{}", rec.note);
            } else {
                tracing::info!(store = %store.describe(), "resuming: {}", rec.note);
            }
            (rec.positions, rec.journals, rec.paths, rec.unseen)
        }
        None => {
            tracing::info!(
                store = %store.describe(),
                backfill = ?config.backfill,
                "first start: no positions recorded yet"
            );
            (
                Positions::new(),
                BTreeMap::new(),
                BTreeMap::new(),
                BTreeMap::new(),
            )
        }
    };
    let store_name = store.describe();
    let counters = Arc::new(Counters::default());
    let committer_heartbeat = Heartbeat::new(epoch);
    let sink_stop = CancellationToken::new();
    let committer = Committer::new(
        store,
        &positions,
        &journals
            .iter()
            .filter_map(|(source, pos)| pos.clone().map(|p| (source.clone(), p)))
            .collect(),
        &paths,
        &unseen,
        counters.clone(),
        committer_heartbeat.clone(),
        config.checkpoint_interval,
        sink_stop.clone(),
    );
    // Alerts: a consumer of committed failures and logins, on a thread of its own.
    // (Its memory is read back from the store: blocking work too.)
    let (alerts_settings, records, alerts_dir, alerts_mail) = (
        config.alerts.clone(),
        crate::report::Records::of(&config),
        config.state_dir.clone(),
        config.report_mail.clone().filter(|_| config.alerts.mail),
    );
    let (alerts_tx, alerts_join) = tokio::task::spawn_blocking(move || {
        crate::alerts::spawn(alerts_settings, records, alerts_dir, alerts_mail)
    })
    .await
    .map_err(|_| DaemonError::SinkGone)?
    .map_err(|source| SinkError::Io {
        op: "start the alerts record in",
        path: config.state_dir.clone(),
        source,
    })?;
    let mut committer = committer.with_consumer(crate::pipeline::Consumer::channel(
        "alerts",
        alerts_tx,
        |e| e,
    ));
    // The responder: another consumer of committed events, when enabled. Its start sets up
    // nftables and reconciles it with the ban record, before anything new is committed.
    let responder = if config.response.enabled {
        let (settings, records, dir) = (
            config.response.clone(),
            crate::report::Records::of(&config),
            config.state_dir.clone(),
        );
        let fleet = config
            .postgres
            .clone()
            .filter(|_| config.response.share && config.store == crate::store::StoreKind::Postgres);
        let started = tokio::task::spawn_blocking(move || {
            crate::respond::spawn(settings, records, dir, fleet)
        })
        .await
        .map_err(|_| DaemonError::SinkGone)??;
        committer = committer.with_consumer(crate::pipeline::Consumer::channel(
            "responder",
            started.tx.clone(),
            crate::respond::responder::Msg::Events,
        ));
        Some(started)
    } else {
        None
    };
    let (respond_tx, respond_figures, respond_join) = match responder {
        Some(r) => (Some(r.tx), Some(r.figures), Some(r.join)),
        None => (None, None, None),
    };
    let committer = committer.with_retention(config.retention);
    let shared = committer.shared_positions();
    let shared_journals = committer.shared_journals();
    // source -> enrichment -> sink, each hop a bounded channel.
    let enricher = Arc::new(
        Enricher::new(config.enrich.clone()).map_err(|e| DaemonError::Enrich(e.to_string()))?,
    );
    let (tx, enrich_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (sink_tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    tokio::spawn(crate::enrich::stage::run(
        enricher.clone(),
        enrich_rx,
        sink_tx,
    ));
    let (done_tx, mut done_rx) = oneshot::channel();
    let handle = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("sink".into())
        .spawn(move || {
            let _ = done_tx.send(committer.run(rx, handle));
        })
        .expect("spawning the sink thread");

    let watcher = if config.notify {
        watch::Watcher::new()
    } else {
        watch::Watcher::disabled()
    };
    let mut geo_tick = tokio::time::interval(Duration::from_secs(5));
    // The reporter: on schedule and on SIGUSR1, beside the pipeline.
    let (report_settings, report_settings_rx) =
        tokio::sync::watch::channel(reporter_settings(&config));
    let (report_trigger, report_trigger_rx) = mpsc::channel(4);
    let report_cancel = CancellationToken::new();
    tokio::spawn(crate::report::reporter::run(
        report_settings_rx,
        report_trigger_rx,
        report_cancel.clone(),
        Arc::new(chrono::Local::now),
        crate::report::reporter::mail_delivery(),
    ));
    // Sources read at the last start, as the checkpoint tells.
    let had_files = !positions.is_empty();
    let had_journal = journals.contains_key(&config.journal.source_id());
    let auto = auto_sources(&config, had_files, had_journal);
    let choice = match config.journal.mode {
        JournalUse::Auto => auto.clone(),
        _ => config.journal.choose(&config.files),
    };
    let mut running = Running {
        report_settings,
        enricher,
        config,
        config_path,
        tx: Some(tx),
        tailers: Vec::new(),
        journal: None,
        auto_choice: (auto.journal, auto.files),
        had_files,
        journal_origin: None,
        watcher,
        counters,
        positions: shared,
        journals: shared_journals,
        epoch,
        cancel: CancellationToken::new(),
        committer_heartbeat,
        budget: EventBudget::default(),
        store_name: store_name.clone(),
        metrics_at: None,
        respond_tx,
        respond_figures,
    };
    let mut start = first_start_mode(
        first_start,
        scanned_first.exists(),
        running.config.backfill,
        store_has_rows,
        &store_name,
    );
    if choice.files && had_journal && !had_files {
        // The journal was the source until now: the files' history is in its rows already.
        tracing::warn!(
            "the journal was read until now and the log files are read from this start: they are read from their end (what they hold before it was recorded from the journal)"
        );
        start = Start::AtEnd;
    }
    if choice.files {
        for path in running.config.files.clone() {
            running.spawn_tailer(&path, positions.clone(), start);
        }
    }
    let files: Vec<String> = running
        .tailers
        .iter()
        .map(|t| t.path.display().to_string())
        .collect();
    if choice.journal {
        tracing::info!(journal = %running.config.journal.describe(), "reading {}: {}", running.config.journal.describe(), choice.why);
        let start = running.journal_start(journals.get(&running.config.journal.source_id()));
        running.spawn_follower(start);
    } else if running.config.journal.mode == JournalUse::Auto {
        tracing::info!("not reading the journal: {}", choice.why);
    }
    if scanned_first.exists()
        && let Err(e) = std::fs::remove_file(&scanned_first)
    {
        tracing::warn!(
            "cannot remove {}: {e} (the next start would apply sources.backfill again to files never read)",
            scanned_first.display()
        );
    }
    tracing::info!(files = ?files, journal = choice.journal, store = %store_name, "maillogsentinel {} running", env!("CARGO_PKG_VERSION"));
    notify::ready(&running.status_line());

    let watchdog = notify::watchdog_interval();
    let mut watchdog_ok = true;
    let mut watchdog_tick =
        tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
    let mut status_tick = tokio::time::interval(Duration::from_secs(5));
    let mut stats_tick = stats_interval(&running.config);
    let mut last_status = String::new();
    let mut pending: Option<PendingReload> = None;
    let mut reload_again = false;
    // Who asked for the reload in progress, and for the one after it (control socket).
    let mut reload_waiters: Vec<oneshot::Sender<control::ReloadAnswer>> = Vec::new();
    let mut next_waiters: Vec<oneshot::Sender<control::ReloadAnswer>> = Vec::new();
    let (requests_tx, mut requests) = mpsc::channel::<control::Request>(control::MAX_CLIENTS);
    let control_stop = CancellationToken::new();
    start_control_socket(
        &running.config.state_dir,
        requests_tx.clone(),
        control_stop.clone(),
    );
    if let Some(addr) = running.config.metrics_listen {
        running.metrics_at = start_metrics(addr, requests_tx, control_stop.clone()).await;
    }

    loop {
        tokio::select! {
            c = control.recv() => match c {
                Some(Control::Shutdown) | None => break,
                Some(Control::Reload) if pending.is_some() => {
                    // One at a time: this one runs when the one in progress is done.
                    reload_again = true;
                }
                Some(Control::Reload) => {
                    pending = running.start_reload(&mut reload_waiters).await;
                }
                Some(Control::Report) => {
                    tracing::info!("report requested (SIGUSR1)");
                    if report_trigger.try_send(()).is_err() {
                        tracing::warn!("a report is already being made; this request is merged with it");
                    }
                }
            },
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                // Idle actors beat about once a second (their receive timeouts; a tailer's
                // poll_interval): a shorter threshold would call a quiet actor stuck.
                let floor = (running.config.poll_interval * 2).max(Duration::from_secs(3));
                let max = watchdog.expect("checked").max(floor).as_millis() as u64;
                let alive = running.alive_within(max);
                if alive {
                    notify::watchdog();
                }
                if alive != watchdog_ok {
                    if alive {
                        tracing::info!("all actors respond again; pinging the watchdog");
                    } else {
                        tracing::error!("an actor stopped responding; not pinging the watchdog (systemd will restart the service)");
                    }
                    watchdog_ok = alive;
                }
            },
            _ = geo_tick.tick() => {
                // A database replaced on disk is picked up without a reload.
                let enricher = running.enricher.clone();
                let _ = tokio::task::spawn_blocking(move || enricher.refresh_geo(false)).await;
            },
            _ = status_tick.tick() => {
                // Repeated warnings held back in a minute that is over are summed up now.
                crate::ratelimit::flush();
                let s = running.status_line();
                if s != last_status {
                    notify::status(&s);
                    last_status = s;
                }
            },
            _ = stats_tick.tick(), if !running.config.stats_interval.is_zero() => {
                let (hits, misses) = (running.enricher.stats.hits.load(Relaxed), running.enricher.stats.misses.load(Relaxed));
                tracing::info!(
                    lines = running.counters.lines.load(Relaxed),
                    failures = running.counters.failures.load(Relaxed),
                    lag_bytes = running.counters.lag_bytes.load(Relaxed),
                    dns_cache_hits = hits,
                    dns_cache_misses = misses,
                    "statistics: {}, reverse DNS cache {hits} hits / {misses} misses ({} entries)", running.counters.snapshot(), running.enricher.cached()
                );
            },
            r = requests.recv() => match r {
                Some(control::Request::Status(reply)) => {
                    let _ = reply.send(running.status());
                }
                Some(control::Request::Metrics(reply)) => {
                    let _ = reply.send(metrics::exposition(&running.figures()));
                }
                Some(control::Request::Health(reply)) => {
                    let _ = reply.send(running.healthy());
                }
                Some(control::Request::Respond(command)) => match &running.respond_tx {
                    // Off the control loop: the responder's queue may be full for a moment.
                    Some(tx) => {
                        let tx = tx.clone();
                        tokio::task::spawn_blocking(move || {
                            if let Err(std::sync::mpsc::SendError(
                                crate::respond::responder::Msg::Command(c),
                            )) = tx.send(crate::respond::responder::Msg::Command(command))
                            {
                                c.refuse("the responder has stopped");
                            }
                        });
                    }
                    None => command.refuse("the responder is off: set [response] enabled = true and restart the daemon"),
                },
                Some(control::Request::Reload(reply)) if pending.is_some() => {
                    // Answered by the reload after the one in progress (which read the file
                    // before this request came).
                    next_waiters.push(reply);
                    reload_again = true;
                }
                Some(control::Request::Reload(reply)) => {
                    tracing::info!("reload requested (control socket)");
                    reload_waiters.push(reply);
                    pending = running.start_reload(&mut reload_waiters).await;
                }
                None => {}
            },
            r = async { (&mut pending.as_mut().expect("guarded").done).await }, if pending.is_some() => {
                let p = pending.take().expect("guarded");
                let answer = match r {
                    Ok(result) => running.finish_reload(p, result),
                    Err(_) => {
                        tracing::error!("reload could not finish: the pipeline stopped");
                        control::ReloadAnswer {
                            problems: vec!["the reload could not finish: the pipeline stopped".into()],
                            ..Default::default()
                        }
                    }
                };
                for w in reload_waiters.drain(..) {
                    let _ = w.send(answer.clone());
                }
                if std::mem::take(&mut reload_again) {
                    reload_waiters.append(&mut next_waiters);
                    pending = running.start_reload(&mut reload_waiters).await;
                }
            },
            r = &mut done_rx => {
                // The sink stopped on its own: nothing can be recorded any more.
                running.stop_tailers();
                return match r {
                    Ok(Err(e)) => Err(DaemonError::Commit(e)),
                    _ => Err(DaemonError::SinkGone),
                };
            },
        }
        if stats_tick.period() != running.config.stats_interval
            && !running.config.stats_interval.is_zero()
        {
            stats_tick = stats_interval(&running.config);
        }
    }

    // Drain: stop reading, let the sink commit what is in flight, write the last checkpoint.
    control_stop.cancel();
    report_cancel.cancel();
    notify::stopping();
    tracing::info!("stopping: draining the pipeline");
    running.stop_tailers();
    running.respond_tx = None;
    sink_stop.cancel();
    let deadline = running.config.shutdown_timeout;
    let journal = running.journal.take();
    let drain = async {
        for t in std::mem::take(&mut running.tailers) {
            let _ = tokio::task::spawn_blocking(move || t.join.join()).await;
        }
        if let Some(j) = journal {
            let _ = tokio::task::spawn_blocking(move || j.join.join()).await;
        }
        let done = done_rx.await;
        // The sink is gone, so is the alerts' sender: they finish what was committed. So does
        // the responder, once the control loop's sender is dropped too.
        let _ = tokio::task::spawn_blocking(move || alerts_join.join()).await;
        if let Some(join) = respond_join {
            let _ = tokio::task::spawn_blocking(move || join.join()).await;
        }
        done
    };
    tokio::select! {
        r = tokio::time::timeout(deadline, drain) => match r {
            Ok(Ok(Ok(()))) => {
                tracing::info!("stopped: {}", running.counters.snapshot());
                Ok(())
            }
            Ok(Ok(Err(e))) => Err(DaemonError::Commit(e)),
            Ok(Err(_)) => Err(DaemonError::SinkGone),
            Err(_) => Err(DaemonError::ShutdownTimeout(deadline)),
        },
        c = control.recv() => match c {
            Some(Control::Shutdown) => Err(DaemonError::Forced),
            _ => Err(DaemonError::Forced),
        },
    }
}

/// What `sources.journal = "auto"` reads at this start: the source the last start read, as the
/// checkpoint tells (a file appearing or vanishing must never make a restart read the same
/// entries twice, or skip them), else what is there now.
fn auto_sources(
    config: &Config,
    had_files: bool,
    had_journal: bool,
) -> crate::source::journal::Choice {
    use crate::source::journal::Choice;
    let mut auto = config.journal.clone();
    auto.mode = JournalUse::Auto;
    match (had_files, had_journal) {
        (false, true) => Choice {
            journal: true,
            files: false,
            why: format!(
                "{} was read at the last start (sources.journal = \"auto\" keeps the source of the last start; set it to true or false to change)",
                config.journal.describe()
            ),
        },
        (true, false) => Choice {
            journal: false,
            files: true,
            why: "the log files were read at the last start (sources.journal = \"auto\" keeps the source of the last start; set it to true to read the journal)".into(),
        },
        _ => auto.choose(&config.files),
    }
}

/// Where a start begins: from the checkpoints; or, on a first start, from the logs' history
/// (backfill) or their ends. `backfill = "auto"` does not back-fill into an output that already
/// holds rows: no checkpoint beside such an output means a new or emptied state directory, and
/// reading the history again would record every row twice.
fn first_start_mode(
    first_start: bool,
    scanned: bool,
    backfill: Backfill,
    rows: bool,
    store: &str,
) -> Start {
    if !first_start {
        return Start::Resume;
    }
    if scanned {
        // The files `scan` read resume where it stopped whatever the mode; this says what
        // becomes of the others.
        return match backfill {
            Backfill::Always => {
                tracing::info!(store = %store, "backfill = true: the history of the files `scan` did not read is read now");
                Start::Resume
            }
            _ => {
                tracing::info!(store = %store, "the files `scan` did not read are followed from their end (set backfill = true to read their history)");
                Start::AtEnd
            }
        };
    }
    match backfill {
        Backfill::Never => Start::AtEnd,
        Backfill::Auto if rows => {
            tracing::warn!(
                store = %store,
                "first start (no positions recorded in the state directory) but the output already holds rows: the logs' history is not read again, so that nothing is recorded twice; only new lines are. If that history is not in the output, set `backfill = true` in [sources] and restart"
            );
            Start::AtEnd
        }
        Backfill::Always if rows => {
            tracing::warn!(
                store = %store,
                "first start with backfill = true: reading the logs' history into an output that already holds rows (rows already there are recorded again)"
            );
            Start::Resume
        }
        Backfill::Auto | Backfill::Always => Start::Resume,
    }
}

fn reporter_settings(config: &Config) -> crate::report::reporter::ReporterSettings {
    crate::report::reporter::ReporterSettings {
        schedule: config.report_schedule.clone(),
        mail: config.report_mail.clone(),
        records: crate::report::Records::of(config),
        state_dir: config.state_dir.clone(),
        this_host: config.server.clone(),
        retry: config.report_retry,
    }
}

fn stats_interval(config: &Config) -> tokio::time::Interval {
    let period = if config.stats_interval.is_zero() {
        Duration::from_secs(3600)
    } else {
        config.stats_interval
    };
    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    i
}

impl Running {
    fn settings(&self, path: &Path) -> TailerSettings {
        TailerSettings {
            path: path.to_path_buf(),
            max_line_bytes: self.config.max_line_bytes,
            server: self.config.server.clone(),
            poll_interval: self.config.poll_interval,
            rotate_wait: self.config.rotate_wait,
            rescan_interval: Duration::from_secs(3600),
        }
    }

    fn spawn_tailer(&mut self, path: &Path, positions: Positions, start: Start) {
        let Some(tx) = self.tx.clone() else { return };
        let (wake_tx, wake_rx) = std_mpsc::channel();
        let cancel = self.cancel.child_token();
        let heartbeat = Heartbeat::new(self.epoch);
        let gauges = Arc::new(crate::source::tailer::SourceGauges::default());
        let tailer = Tailer::new(
            self.settings(path),
            positions,
            start,
            tx,
            wake_rx,
            cancel.clone(),
            self.counters.clone(),
            heartbeat.clone(),
            gauges.clone(),
            self.budget.clone(),
        );
        let name = path
            .file_name()
            .map_or("log".into(), |n| n.to_string_lossy().into_owned());
        let join = std::thread::Builder::new()
            .name(format!("tail {name}"))
            .spawn(move || tailer.run())
            .expect("spawning a tailer thread");
        self.watcher.add(path, wake_tx.clone());
        self.tailers.push(TailerHandle {
            path: path.to_path_buf(),
            cancel,
            wake: wake_tx,
            join,
            heartbeat,
            gauges,
        });
    }

    /// Where the journal reader starts: after the committed entry; without one (a first
    /// start, or the journal newly read), at the oldest entry with `backfill = true` unless
    /// the log files were the source until now (their rows hold that history), else at the
    /// newest. `Some(None)`: the first batch read from it was lost, read it from the head.
    fn journal_start(&self, recovered: Option<&Option<JournalPos>>) -> JournalStart {
        match recovered {
            Some(Some(pos)) => JournalStart::After(pos.clone()),
            Some(None) => JournalStart::Head,
            None if self.config.backfill == Backfill::Always && !self.files_read() => {
                JournalStart::Head
            }
            None => JournalStart::Tail,
        }
    }

    /// Whether log files were read, before this start or since.
    fn files_read(&self) -> bool {
        self.had_files || !self.positions.lock().expect("positions lock").is_empty()
    }

    fn spawn_follower(&mut self, start: JournalStart) {
        let Some(tx) = self.tx.clone() else { return };
        let cancel = self.cancel.child_token();
        let heartbeat = Heartbeat::new(self.epoch);
        self.journal_origin = Some(start.clone());
        let follower = Follower::new(
            self.config.journal.clone(),
            start,
            tx,
            cancel.clone(),
            self.counters.clone(),
            heartbeat.clone(),
            self.budget.clone(),
        );
        let join = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || follower.run())
            .expect("spawning the journal thread");
        self.journal = Some(JournalHandle {
            cancel,
            join,
            heartbeat,
        });
    }

    /// Which sources a configuration reads now: `"auto"` keeps the choice made at start.
    fn sources_wanted(&self, config: &Config) -> (bool, bool) {
        match config.journal.mode {
            JournalUse::Auto => self.auto_choice,
            JournalUse::Always => (true, true),
            JournalUse::Never => (false, true),
        }
    }

    /// Cancels every tailer and drops the daemon's own sender, so the sink sees the end.
    fn stop_tailers(&mut self) {
        self.cancel.cancel();
        for t in &self.tailers {
            let _ = t.wake.send(Wake::Stop);
        }
        self.tx = None;
    }

    fn alive_within(&self, max_ms: u64) -> bool {
        self.committer_heartbeat.alive_within(max_ms)
            && self
                .journal
                .as_ref()
                .is_none_or(|j| j.heartbeat.alive_within(max_ms))
            && self
                .tailers
                .iter()
                .all(|t| t.heartbeat.alive_within(max_ms))
    }

    /// The line systemd shows (`STATUS=`): what is wrong first, then what is being done.
    fn status_line(&self) -> String {
        let lag: u64 = self
            .tailers
            .iter()
            .map(|t| t.gauges.lag.load(Relaxed))
            .sum();
        self.counters.lag_bytes.store(lag, Relaxed);
        let s = self.counters.snapshot();
        let journal = if self.journal.is_some() {
            " and the journal"
        } else {
            ""
        };
        let mut line: Vec<String> = self.problems();
        line.push(format!(
            "following {} file(s){journal}: {} lines read, {} failed logins recorded, {} skipped, lag {} bytes",
            self.tailers.len(),
            s.lines,
            s.failures,
            s.too_long + s.unrecognised,
            lag
        ));
        line.join("; ")
    }

    /// What is wrong now, most serious first: the store failing, logs not read, GeoIP
    /// databases missing, reports not delivered.
    fn problems(&self) -> Vec<String> {
        use crate::source::tailer::SourceState;
        let mut out = Vec::new();
        if let Some(p) = self
            .counters
            .store_problem
            .lock()
            .expect("problem lock")
            .clone()
        {
            out.push(p);
        }
        for t in &self.tailers {
            match t.gauges.state() {
                SourceState::Waiting => out.push(format!("waiting for {}", t.path.display())),
                SourceState::Unreadable => out.push(format!("cannot read {}", t.path.display())),
                _ => {}
            }
        }
        let missing: Vec<&str> = self
            .enricher
            .geo_databases()
            .into_iter()
            .filter(|(_, _, open)| open.is_none())
            .map(|(what, _, _)| what)
            .collect();
        if !missing.is_empty() {
            out.push(format!(
                "GeoIP database missing: {} (maillogsentinel geoip update)",
                missing.join(", ")
            ));
        }
        let (outbox, refused) = crate::report::mail::outbox_counts(&self.config.state_dir);
        if outbox > 0 {
            out.push(format!("{outbox} report(s) waiting in the outbox"));
        }
        if refused > 0 {
            out.push(format!(
                "{refused} mail(s) refused for good by the mail server, kept in {} (not retried: read why in the .json beside each, fix [report], then resend or delete them)",
                crate::report::mail::failed_dir(&self.config.state_dir).display()
            ));
        }
        out
    }

    /// Starts a reload; when it completes at once (or is refused), answers `waiters` and
    /// returns `None`, else returns its pipeline part (the waiters are answered when it ends).
    async fn start_reload(
        &mut self,
        waiters: &mut Vec<oneshot::Sender<control::ReloadAnswer>>,
    ) -> Option<PendingReload> {
        match self.reload().await {
            Reloaded::Done(answer) => {
                for w in waiters.drain(..) {
                    let _ = w.send(answer.clone());
                }
                None
            }
            Reloaded::Pending(p) => Some(p),
        }
    }

    /// SIGHUP: validate the new configuration, then apply it; on any error keep the old one.
    /// What needs the pipeline (switching the CSV, stopping readers and waiting for their
    /// batches to be committed) runs as a task of its own: with a backlog it can take minutes,
    /// and the control loop must meanwhile answer SIGTERM and ping the watchdog.
    async fn reload(&mut self) -> Reloaded {
        notify::reloading();
        match Config::load(self.config_path.as_deref()) {
            Err(e) => {
                log_reload_error(&e);
                notify::ready(&self.status_line());
                Reloaded::Done(control::ReloadAnswer {
                    ok: false,
                    problems: vec![e.to_string()],
                    ..Default::default()
                })
            }
            Ok(new) => self.apply(new).await,
        }
    }

    /// Applies what can be at once, and returns the pipeline's part of the reload as a pending
    /// task (or the answer, when there is none: the reload is complete).
    async fn apply(&mut self, mut new: Config) -> Reloaded {
        let mut changes = self.config.changes(&new);
        let mut notes = Vec::new();
        let mut note = |text: String| {
            tracing::warn!("{text}");
            notes.push(text);
        };
        if new.state_dir != self.config.state_dir {
            note(format!(
                "sources.state_dir changes only at restart; {} stays in use until then (move its files to the new directory before restarting: a start without a checkpoint does not read the logs' history into an output that holds rows)",
                self.config.state_dir.display()
            ));
            changes.retain(|c| !c.starts_with("sources.state_dir"));
            new.state_dir = self.config.state_dir.clone();
            new.raw.sources.state_dir = self.config.raw.sources.state_dir.clone();
        }
        if let Err(e) = self.enricher.reconfigure(new.enrich.clone()) {
            tracing::error!("configuration not applied, the running one is kept: {e}");
            notify::ready(&self.status_line());
            return Reloaded::Done(control::ReloadAnswer {
                ok: false,
                problems: vec![e.to_string()],
                notes,
                ..Default::default()
            });
        }
        // SIGHUP also picks up databases replaced on disk.
        let enricher = self.enricher.clone();
        let _ = tokio::task::spawn_blocking(move || enricher.refresh_geo(true)).await;
        if new.response != self.config.response {
            note("[response] changes only at restart (the responder sets nftables up and reconciles it with its record when it starts); the running settings stay until then".into());
            changes.retain(|c| !c.starts_with("response."));
            new.response = self.config.response.clone();
            new.raw.response = self.config.raw.response.clone();
        }
        if new.metrics_listen != self.config.metrics_listen {
            note("metrics.listen changes only at restart".into());
            changes.retain(|c| !c.starts_with("metrics.listen"));
            new.metrics_listen = self.config.metrics_listen;
            new.raw.metrics.listen = self.config.raw.metrics.listen.clone();
        }
        if new.notify != self.config.notify {
            note("sources.notify changes only at restart".into());
            changes.retain(|c| !c.starts_with("sources.notify"));
            new.notify = self.config.notify;
            new.raw.sources.notify = self.config.raw.sources.notify;
        }
        if new.logins != self.config.logins {
            note(format!(
                "output.logins changes only at restart; {} stays in use until then",
                self.config.logins.as_ref().map_or_else(
                    || "no logins record".to_string(),
                    |p| p.display().to_string()
                )
            ));
            changes.retain(|c| !c.starts_with("output.logins"));
            new.logins = self.config.logins.clone();
            new.raw.output.logins = Some(self.config.logins.clone().unwrap_or_default());
        }
        let sqlite_moved = self.config.store == crate::store::StoreKind::Sqlite
            && new.sqlite != self.config.sqlite;
        let postgres_moved = self.config.store == crate::store::StoreKind::Postgres
            && new.postgres != self.config.postgres;
        if new.store != self.config.store
            || sqlite_moved
            || postgres_moved
            || new.retention != self.config.retention
        {
            note(format!(
                "output.store, where its database is and output.retention change only at restart; the {} store stays in use as it is until then",
                self.config.store.as_str()
            ));
            changes.retain(|c| {
                ![
                    "output.store",
                    "output.sqlite",
                    "output.postgres",
                    "output.password_file",
                    "output.instance",
                    "output.retention",
                ]
                .iter()
                .any(|k| c.starts_with(k))
            });
            new.store = self.config.store;
            new.sqlite = self.config.sqlite.clone();
            new.postgres = self.config.postgres.clone();
            let old = &self.config.raw.output;
            new.raw.output.store = old.store;
            new.raw.output.sqlite = old.sqlite.clone();
            new.raw.output.postgres = old.postgres.clone();
            new.raw.output.password_file = old.password_file.clone();
            new.raw.output.instance = old.instance.clone();
            new.retention = self.config.retention;
            new.raw.output.retention = old.retention;
        }
        // Only the CSV store writes to output.csv.
        let switch_output = (new.store == crate::store::StoreKind::Csv
            && new.csv != self.config.csv)
            .then(|| (new.csv.clone(), self.config.csv.clone()));
        let _ = self.report_settings.send(reporter_settings(&new));
        let restart_all = new.max_line_bytes != self.config.max_line_bytes
            || new.server != self.config.server
            || new.poll_interval != self.config.poll_interval
            || new.rotate_wait != self.config.rotate_wait;
        let (want_journal, want_files) = self.sources_wanted(&new);
        let journal_was_read =
            self.journal.is_some() || !self.journals.lock().expect("positions lock").is_empty();
        let stop: Vec<PathBuf> = self
            .tailers
            .iter()
            .map(|t| t.path.clone())
            .filter(|p| restart_all || !want_files || !new.files.contains(p))
            .collect();
        // A journal reader whose journal or matches change starts again from the committed
        // position (with other matches, entries between may be read that the old ones left).
        let stop_journal =
            self.journal.is_some() && (!want_journal || new.journal != self.config.journal);
        let start_journal = want_journal && (self.journal.is_none() || stop_journal);
        let old_files = self.config.files.clone();
        self.config = new;
        let start: Vec<PathBuf> = if want_files {
            self.config
                .files
                .iter()
                .filter(|p| stop.contains(p) || !self.tailers.iter().any(|t| &t.path == *p))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        if switch_output.is_none() && stop.is_empty() && start.is_empty() && !start_journal {
            log_changes(&changes);
            notify::ready(&self.status_line());
            return Reloaded::Done(control::ReloadAnswer {
                ok: true,
                changes,
                notes,
                ..Default::default()
            });
        }
        // Stopped readers must be gone, and their batches committed, before any reader starts
        // again from the committed positions: otherwise lines in flight would be read twice.
        let mut stopped = Vec::new();
        for path in &stop {
            if let Some(i) = self.tailers.iter().position(|t| &t.path == path) {
                let t = self.tailers.remove(i);
                t.cancel.cancel();
                let _ = t.wake.send(Wake::Stop);
                self.watcher.remove(&t.path);
                stopped.push(t.join);
            }
        }
        if stop_journal && let Some(j) = self.journal.take() {
            j.cancel.cancel();
            stopped.push(j.join);
        }
        let Some(tx) = self.tx.clone() else {
            return Reloaded::Done(control::ReloadAnswer {
                problems: vec!["the daemon is stopping".into()],
                ..Default::default()
            });
        };
        let cancel = self.cancel.child_token();
        let (done_tx, done) = oneshot::channel();
        let positions = self.positions.clone();
        let journals = self.journals.clone();
        let switch = switch_output.as_ref().map(|(to, _)| to.clone());
        tokio::spawn(async move {
            let job = async {
                let mut switched = Ok(());
                if let Some(to) = switch {
                    let (reply, answer) = oneshot::channel();
                    tx.send(ToSink::SwitchOutput(to, reply))
                        .await
                        .map_err(|_| "the sink is gone".to_string())?;
                    switched = answer.await.map_err(|_| "the sink is gone".to_string())?;
                }
                for join in stopped {
                    let _ = tokio::task::spawn_blocking(move || join.join()).await;
                }
                let (reply, answer) = oneshot::channel();
                tx.send(ToSink::Barrier(reply))
                    .await
                    .map_err(|_| "the sink is gone".to_string())?;
                answer.await.map_err(|_| "the sink is gone".to_string())?;
                let positions = positions.lock().expect("positions lock").clone();
                let journals = journals.lock().expect("positions lock").clone();
                Ok::<_, String>((positions, journals, switched))
            };
            // Stopping abandons the reload (and drops this task's sender, so the sink can end).
            tokio::select! {
                r = job => { let _ = done_tx.send(r); }
                _ = cancel.cancelled() => {}
            }
        });
        Reloaded::Pending(PendingReload {
            done,
            changes,
            notes,
            start,
            stop,
            start_journal,
            journal_was_read,
            journal_origin: if stop_journal {
                self.journal_origin.clone()
            } else {
                None
            },
            old_files,
            switch_output,
        })
    }

    /// Finishes a reload once its pipeline part is done: starts the readers it stopped or
    /// added, and says how it ended.
    fn finish_reload(
        &mut self,
        pending: PendingReload,
        result: ReloadOutcome,
    ) -> control::ReloadAnswer {
        let mut answer = control::ReloadAnswer {
            notes: pending.notes.clone(),
            ..Default::default()
        };
        let (positions, journals, switched) = match result {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("reload could not finish: {e}");
                answer
                    .problems
                    .push(format!("the reload could not finish: {e}"));
                return answer;
            }
        };
        let mut changes = pending.changes;
        if let (Err(e), Some((to, from))) = (switched, &pending.switch_output) {
            let text = format!(
                "cannot switch the output to {}: {e}; rows keep going to {}",
                to.display(),
                from.display()
            );
            tracing::error!("{text}");
            answer.problems.push(text);
            changes.retain(|c| !c.starts_with("output.csv"));
            self.config.csv = from.clone();
            let _ = self.report_settings.send(reporter_settings(&self.config));
        }
        for path in pending.start {
            if self.config.files.contains(&path) && !self.tailers.iter().any(|t| t.path == path) {
                if !pending.old_files.contains(&path) {
                    tracing::info!(path = %path.display(), "now following");
                }
                // Files read for the first time after the journal was the source: their
                // history is in the journal's rows already.
                let start = if pending.journal_was_read && positions.is_empty() {
                    tracing::info!(path = %path.display(), "the journal was read until now: reading this file from its end");
                    Start::AtEnd
                } else {
                    Start::Resume
                };
                self.spawn_tailer(&path, positions.clone(), start);
            }
        }
        for path in pending
            .stop
            .iter()
            .filter(|p| !self.config.files.contains(p))
        {
            tracing::info!(path = %path.display(), "no longer following");
        }
        if pending.start_journal && self.journal.is_none() {
            let start = match journals.get(&self.config.journal.source_id()) {
                Some(pos) => JournalStart::After(pos.clone()),
                // Nothing committed yet from a reader that began at the head (a backfill):
                // it begins there again.
                None if pending.journal_origin == Some(JournalStart::Head) => JournalStart::Head,
                None => self.journal_start(None),
            };
            tracing::info!(journal = %self.config.journal.describe(), "now reading the journal");
            self.spawn_follower(start);
        }
        log_changes(&changes);
        notify::ready(&self.status_line());
        answer.ok = answer.problems.is_empty();
        answer.changes = changes;
        answer
    }

    /// What `status` answers.
    fn status(&self) -> control::Status {
        let summary = self.status_line();
        let mut sources: Vec<control::SourceStatus> = self
            .tailers
            .iter()
            .map(|t| control::SourceStatus {
                kind: "file".into(),
                name: t.path.display().to_string(),
                state: t.gauges.state().describe().into(),
                offset: Some(t.gauges.offset.load(Relaxed)),
                size: Some(t.gauges.size.load(Relaxed)),
                lag_bytes: Some(t.gauges.lag.load(Relaxed)),
                lag_secs: Some(lag_secs(
                    t.gauges.lag.load(Relaxed),
                    t.gauges.last_read_unix.load(Relaxed),
                    self.epoch,
                )),
                last_read: rfc3339(t.gauges.last_read_unix.load(Relaxed) as i64),
            })
            .collect();
        if self.journal.is_some() {
            // The entry committed last: its time says how far behind the journal reading is.
            let last = self
                .journals
                .lock()
                .expect("positions lock")
                .get(&self.config.journal.source_id())
                .map(|p| (p.realtime_usec / 1_000_000) as i64);
            sources.push(control::SourceStatus {
                kind: "journal".into(),
                name: self.config.journal.describe(),
                state: "following".into(),
                offset: None,
                size: None,
                lag_bytes: None,
                lag_secs: None,
                last_read: last.and_then(rfc3339),
            });
        }
        let (outbox, outbox_refused) = crate::report::mail::outbox_counts(&self.config.state_dir);
        control::Status {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_secs: self.epoch.elapsed().as_secs(),
            config: self.config_path.clone(),
            summary,
            store: self.store_name.clone(),
            sources,
            counters: self.counters.snapshot(),
            by_service: self
                .counters
                .by_kind
                .lock()
                .expect("kinds lock")
                .iter()
                .map(|((service, mechanism, outcome), n)| control::KindCount {
                    service: service.clone(),
                    mechanism: mechanism.clone(),
                    outcome: (*outcome).into(),
                    count: *n,
                })
                .collect(),
            problems: self.problems(),
            enrichment: control::EnrichmentStatus {
                cache_entries: self.enricher.cached(),
                cache_hits: self.enricher.stats.hits.load(Relaxed),
                cache_misses: self.enricher.stats.misses.load(Relaxed),
                dns_timeouts: self.enricher.stats.timeouts.load(Relaxed),
                geoip: self
                    .enricher
                    .geo_databases()
                    .into_iter()
                    .map(|(what, path, database)| control::GeoStatus {
                        what: what.into(),
                        path,
                        database,
                    })
                    .collect(),
            },
            outbox,
            outbox_refused,
            metrics: self.metrics_at.map(|a| a.to_string()),
            response: self.respond_figures.as_ref().map(|f| {
                let f = f.snapshot();
                control::ResponseStatus {
                    mode: self.config.response.mode.as_str().into(),
                    active: f.active,
                    bans: f.bans,
                    failed: f.failed,
                    spared: f.spared,
                    forgiven: f.forgiven,
                }
            }),
            last_commit: rfc3339(self.counters.last_commit_unix.load(Relaxed) as i64),
            last_report: crate::report::state::ReportState::load(&self.config.state_dir)
                .last_to
                .and_then(rfc3339),
            next_report: crate::report::reporter::next_delay(
                &self.config.report_schedule,
                chrono::Local::now(),
            )
            .and_then(|d| {
                // (Rounded to the second: the schedule's instants are whole seconds.)
                let at = std::time::SystemTime::now() + d + Duration::from_millis(500);
                rfc3339(
                    at.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |t| t.as_secs() as i64),
                )
            }),
        }
    }

    /// Whether every actor beat recently (the watchdog's test, whether or not systemd asks).
    fn healthy(&self) -> bool {
        let floor = (self.config.poll_interval * 2).max(Duration::from_secs(3));
        let max = notify::watchdog_interval().map_or(floor, |w| w.max(floor));
        self.alive_within(max.as_millis() as u64)
    }

    /// What `/metrics` exposes.
    fn figures(&self) -> metrics::Figures {
        let mut states: BTreeMap<String, u64> = BTreeMap::new();
        for t in &self.tailers {
            *states
                .entry(format!("{:?}", t.gauges.state()).to_lowercase())
                .or_default() += 1;
        }
        if self.journal.is_some() {
            *states.entry("following".into()).or_default() += 1;
        }
        metrics::Figures {
            counters: self.counters.snapshot(),
            uptime_secs: self.epoch.elapsed().as_secs(),
            dns_cache: (
                self.enricher.cached(),
                self.enricher.stats.hits.load(Relaxed),
                self.enricher.stats.misses.load(Relaxed),
            ),
            dns_timeouts: self.enricher.stats.timeouts.load(Relaxed),
            geoip: self
                .enricher
                .geo_databases()
                .into_iter()
                .map(|(what, _, open)| (what.to_lowercase(), open.is_some()))
                .collect(),
            outbox: outbox_count(&self.config.state_dir) as u64,
            store_up: self
                .counters
                .store_problem
                .lock()
                .expect("problem lock")
                .is_none(),
            sources: states.into_iter().collect(),
            healthy: self.healthy(),
            by_kind: self
                .counters
                .by_kind
                .lock()
                .expect("kinds lock")
                .iter()
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
            response: self.respond_figures.as_ref().map(|f| f.snapshot()),
        }
    }
}

/// How a reload went on: complete, or waiting for its pipeline part.
enum Reloaded {
    /// Complete (or refused).
    Done(control::ReloadAnswer),
    /// The pipeline's part is running.
    Pending(PendingReload),
}

/// What the pipeline's part of a reload ends with: the committed positions and whether the
/// output was switched, or why it could not finish.
type ReloadOutcome = Result<(Positions, BTreeMap<String, JournalPos>, Result<(), String>), String>;

/// The pipeline's part of a reload, running beside the control loop.
struct PendingReload {
    /// The committed positions once stopped readers are done (and whether the output switched).
    done: oneshot::Receiver<ReloadOutcome>,
    /// What changed, logged once the reload is complete.
    changes: Vec<String>,
    /// What was said beside (keys that change only at restart).
    notes: Vec<String>,
    /// Readers to start then.
    start: Vec<PathBuf>,
    /// Readers stopped.
    stop: Vec<PathBuf>,
    /// Start the journal reader then.
    start_journal: bool,
    /// Where the stopped journal reader had begun.
    journal_origin: Option<JournalStart>,
    /// The journal was read before this reload.
    journal_was_read: bool,
    /// The files followed before the reload.
    old_files: Vec<PathBuf>,
    /// (new, old) CSV, when it changes.
    switch_output: Option<(PathBuf, PathBuf)>,
}

fn log_changes(changes: &[String]) {
    if changes.is_empty() {
        tracing::info!("configuration reloaded: nothing changed");
    }
    for c in changes {
        tracing::info!("configuration reloaded: {c}");
    }
}

/// Binds `[metrics] listen` and serves it on a task of its own; returns the address bound (the
/// port chosen when 0 was asked). A failure is logged, not fatal: recording matters more.
async fn start_metrics(
    addr: std::net::SocketAddr,
    requests: mpsc::Sender<control::Request>,
    stop: CancellationToken,
) -> Option<std::net::SocketAddr> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            let at = listener.local_addr().ok();
            tracing::info!(
                "serving Prometheus metrics at http://{}/metrics",
                at.unwrap_or(addr)
            );
            tokio::spawn(metrics::serve(listener, requests, stop));
            at
        }
        Err(e) => {
            tracing::error!(
                "[metrics] listen = \"{addr}\": cannot listen there: {e}; no metrics are served (choose a free address and port, then restart)"
            );
            None
        }
    }
}

/// How long a file's reading has been behind: 0 when caught up, else since it last moved on
/// (or since the daemon started, when it has not yet).
fn lag_secs(lag_bytes: u64, last_read_unix: u64, started: Instant) -> u64 {
    if lag_bytes == 0 {
        return 0;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match last_read_unix {
        0 => started.elapsed().as_secs(),
        t => now.saturating_sub(t),
    }
}

/// Seconds since the epoch as local RFC 3339 (`None` for 0: never).
fn rfc3339(secs: i64) -> Option<String> {
    (secs > 0)
        .then(|| chrono::DateTime::from_timestamp(secs, 0))
        .flatten()
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
        })
}

/// Reports waiting in the outbox to be sent.
fn outbox_count(state_dir: &Path) -> usize {
    crate::report::mail::outbox_counts(state_dir).0
}

/// Binds the control socket and serves it on a task of its own. Without it the daemon still
/// runs (`status` and `reload` then say it is not running): the error is logged, not fatal.
fn start_control_socket(
    state_dir: &Path,
    requests: mpsc::Sender<control::Request>,
    stop: CancellationToken,
) {
    let path = control::socket_path(state_dir);
    match control::bind(&path) {
        Ok(listener) => {
            if let Err(e) = control::link_from_state_dir(state_dir, &path) {
                tracing::warn!(
                    "cannot link {} to the control socket {}: {e}; `status` and `reload` will not find it",
                    control::client_path(state_dir).display(),
                    path.display()
                );
            }
            tracing::debug!(socket = %path.display(), "control socket ready");
            tokio::spawn(control::serve(listener, requests, stop));
        }
        Err(e) => tracing::error!(
            "{e}; `maillogsentinel status` and `reload` cannot reach this daemon (SIGHUP still reloads)"
        ),
    }
}

fn log_reload_error(e: &ConfigError) {
    tracing::error!("configuration reload failed, the running configuration is kept: {e}");
}

/// Creates the state directory (mode 0750) and takes its lock, so that two daemons never share
/// checkpoints. The lock lasts as long as the returned file is open.
pub fn lock_state_dir(dir: &Path) -> Result<std::fs::File, DaemonError> {
    use std::os::unix::fs::DirBuilderExt;
    let err = |message: String| DaemonError::StateDir {
        path: dir.to_path_buf(),
        message,
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|e| err(format!("cannot create it: {e}")))?;
    }
    let lock_path = dir.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| err(format!("cannot open {}: {e}", lock_path.display())))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(err(
            "in use by another running maillogsentinel (its lock file is held)".into(),
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(err(format!("cannot lock {}: {e}", lock_path.display())))
        }
    }
}

/// Turns SIGTERM, SIGINT, SIGHUP and SIGUSR1 into [`Control`] messages.
pub fn forward_signals() -> std::io::Result<mpsc::Receiver<Control>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = mpsc::channel(8);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    tokio::spawn(async move {
        loop {
            let c = tokio::select! {
                _ = term.recv() => Control::Shutdown,
                _ = int.recv() => Control::Shutdown,
                _ = hup.recv() => Control::Reload,
                _ = usr1.recv() => Control::Report,
            };
            if tx.send(c).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
