//! The responder's thread: takes each commit's events, decides with the [`Engine`], carries
//! bans out (nftables, then the command), records them, and answers the control socket's
//! `bans`, `ban` and `unban`.
//!
//! At start, before anything new is committed: the record is read (bans still running, repeat
//! offenders, forgiven addresses), nftables is set up and reconciled with it (running bans put
//! back with their time left, elements nobody recorded removed), and the rules' windows are
//! rebuilt from the store's last window, replaying the bans they made. A failure whose ban the
//! record lacks (a crash between the commit and the ban) is banned then: after a restart, an
//! attacker's count is neither forgotten nor banned twice.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::exec::{self, Facts};
use super::nft::{Nft, NftError};
use super::record::{Action, Book, Record, RecordError, Row};
use super::rules::{Decision, Engine};
use super::{Mode, ResponseSettings};
use crate::pipeline::Committed;

/// Commits (and commands) queued for the responder.
pub const QUEUE: usize = 64;
/// Bans queued for the `exec` command.
pub const EXEC_QUEUE: usize = 4096;

/// A request from the control socket.
#[derive(Debug)]
pub enum Command {
    /// `bans`: the bans running.
    List(oneshot::Sender<Result<Vec<BanView>, String>>),
    /// `ban`: ban an address or network by hand (default length: the first rule's ban).
    Ban {
        /// What.
        target: IpNet,
        /// For how long.
        duration: Option<Duration>,
        /// What happened.
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// `unban`: lift a ban (`None`: every ban).
    Unban {
        /// What.
        target: Option<IpNet>,
        /// What happened.
        reply: oneshot::Sender<Result<String, String>>,
    },
}

impl Command {
    /// Answers that the request cannot be served, and why.
    pub fn refuse(self, why: &str) {
        match self {
            Command::List(reply) => {
                let _ = reply.send(Err(why.to_string()));
            }
            Command::Ban { reply, .. } | Command::Unban { reply, .. } => {
                let _ = reply.send(Err(why.to_string()));
            }
        }
    }
}

/// What the responder's queue carries.
#[derive(Debug)]
pub enum Msg {
    /// One commit's events.
    Events(Vec<Committed>),
    /// A request.
    Command(Command),
}

/// A running ban, as `maillogsentinel bans` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanView {
    /// The address or network.
    pub target: String,
    /// The rule (`manual` for a ban by hand).
    pub rule: String,
    /// When it started, seconds since the epoch.
    pub started: i64,
    /// When it ends.
    pub expires: i64,
    /// Seconds left.
    pub remaining_secs: u64,
    /// The address whose failure made it.
    pub ip: String,
    /// The username it tried.
    pub username: String,
    /// Country.
    pub country: String,
    /// AS number.
    pub asn: Option<u32>,
    /// AS organisation.
    pub as_org: String,
    /// `ban`, or `log` (decided, not carried out).
    pub mode: String,
    /// `ok`, or what went wrong carrying it out.
    pub outcome: String,
}

/// The responder's figures, for status and metrics.
#[derive(Debug, Default)]
pub struct Figures {
    /// Bans running.
    pub active: AtomicU64,
    /// Bans decided since start.
    pub bans: AtomicU64,
    /// Bans whose action failed (nftables or the command).
    pub failed: AtomicU64,
    /// Failures of ignored or non-global addresses (recorded, never banned).
    pub spared: AtomicU64,
    /// Addresses forgiven after a successful login.
    pub forgiven: AtomicU64,
    /// Bans decided since start, by rule (names from the configuration, and `manual`).
    pub by_rule: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// The responder's figures at one moment (for status and metrics).
#[derive(Debug, Clone, Default)]
pub struct FiguresSnapshot {
    /// Bans running.
    pub active: u64,
    /// Bans decided since start.
    pub bans: u64,
    /// Bans decided since start, by rule.
    pub by_rule: Vec<(String, u64)>,
    /// Bans whose action failed.
    pub failed: u64,
    /// Failures of protected addresses, not counted.
    pub spared: u64,
    /// Addresses forgiven after a login.
    pub forgiven: u64,
}

impl Figures {
    /// The figures now.
    pub fn snapshot(&self) -> FiguresSnapshot {
        FiguresSnapshot {
            active: self.active.load(Relaxed),
            bans: self.bans.load(Relaxed),
            by_rule: self
                .by_rule
                .lock()
                .expect("figures lock")
                .iter()
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
            failed: self.failed.load(Relaxed),
            spared: self.spared.load(Relaxed),
            forgiven: self.forgiven.load(Relaxed),
        }
    }
}

/// Why the responder could not start.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    /// nftables could not be set up.
    #[error("[response]: {0}")]
    Nft(#[from] NftError),
    /// The ban record could not be read or rewritten.
    #[error("[response]: {0}")]
    Record(#[from] RecordError),
    /// The thread could not start.
    #[error("[response]: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// A started responder.
#[derive(Debug)]
pub struct Started {
    /// Its queue (events from the sink, requests from the control socket).
    pub tx: std::sync::mpsc::SyncSender<Msg>,
    /// Its thread, which ends once every sender is dropped.
    pub join: std::thread::JoinHandle<()>,
    /// Its figures.
    pub figures: Arc<Figures>,
}

/// Starts the responder (see the module's documentation for what a start does); `fleet` is the
/// PostgreSQL database its bans are shared through (`[response] share`).
pub fn spawn(
    settings: ResponseSettings,
    records: crate::report::Records,
    state_dir: PathBuf,
    fleet: Option<crate::store::postgres::PgSettings>,
) -> Result<Started, ResponseError> {
    let now = chrono::Utc::now().timestamp();
    let mut r = Responder::new(settings, &state_dir, now)?;
    r.reconcile(now)?;
    // The fleet first: bans the rebuild finds missing are then shared too.
    if let Some(pg) = fleet {
        r.join_fleet(pg, now).map_err(ResponseError::Thread)?;
    }
    r.rebuild(&records, &state_dir, now);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(QUEUE);
    let figures = r.figures.clone();
    let join = std::thread::Builder::new()
        .name("responder".into())
        .spawn(move || r.run(rx))
        .map_err(ResponseError::Thread)?;
    Ok(Started { tx, join, figures })
}

/// A ban the command is run for.
struct ExecJob {
    row: Row,
}

/// The responder's part in a fleet.
struct FleetLink {
    publisher: super::fleet::Sharer,
    rx: std::sync::mpsc::Receiver<Vec<super::fleet::FleetRow>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    join: Option<std::thread::JoinHandle<()>>,
}

struct Responder {
    /// Set when the daemon stops: the command is not run for bans still queued.
    exec_stop: Arc<std::sync::atomic::AtomicBool>,
    fleet: Option<FleetLink>,
    engine: Engine,
    ignore: Vec<IpNet>,
    book: Book,
    record: Arc<Record>,
    nft: Option<Nft>,
    exec: Option<(
        std::sync::mpsc::SyncSender<ExecJob>,
        std::thread::JoinHandle<()>,
    )>,
    figures: Arc<Figures>,
}

impl Responder {
    fn new(
        settings: ResponseSettings,
        state_dir: &std::path::Path,
        now: i64,
    ) -> Result<Self, ResponseError> {
        let mut ignore = settings.ignore.clone();
        ignore.extend(super::own_addresses());
        let record = Arc::new(Record::new(state_dir));
        let keep = settings.max_ban.max(settings.longest_window()).as_secs() as i64;
        let book = record.load(now, keep)?;
        let exec_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let nft = (settings.mode == Mode::Ban && settings.nftables)
            .then(|| Nft::new(settings.ipv6_prefix));
        let exec = (settings.mode == Mode::Ban && !settings.exec.is_empty())
            .then(|| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<ExecJob>(EXEC_QUEUE);
                let (template, timeout, record, stop) = (
                    settings.exec.clone(),
                    settings.exec_timeout,
                    record.clone(),
                    exec_stop.clone(),
                );
                std::thread::Builder::new()
                    .name("response-exec".into())
                    .spawn(move || run_exec(rx, &template, timeout, &record, &stop))
                    .map(|j| (tx, j))
            })
            .transpose()
            .map_err(ResponseError::Thread)?;
        Ok(Responder {
            exec_stop,
            fleet: None,
            engine: Engine::new(settings),
            ignore,
            book,
            record,
            nft,
            exec,
            figures: Arc::new(Figures::default()),
        })
    }

    fn settings(&self) -> &ResponseSettings {
        self.engine.settings()
    }

    /// Sets nftables up and makes its sets hold exactly the running bans.
    fn reconcile(&mut self, now: i64) -> Result<(), ResponseError> {
        self.book.expire(now);
        if self.settings().mode == Mode::Ban {
            // Decisions of a dry run were never carried out: they must not keep those
            // addresses from a real ban now.
            self.book.active.retain(|_, r| r.mode == Mode::Ban);
        }
        self.figures
            .active
            .store(self.book.active.len() as u64, Relaxed);
        let Some(nft) = &self.nft else {
            tracing::info!(
                running = self.book.active.len(),
                "response: {} bans running (nftables not used: {})",
                self.book.active.len(),
                if self.settings().mode == Mode::Log {
                    "mode = \"log\""
                } else {
                    "nftables = false"
                }
            );
            return Ok(());
        };
        // Both `nft` and this process (over netlink) must be allowed to change nftables.
        nft.probe()?;
        nft.setup(&self.settings().ports)?;
        let present = nft.list()?;
        // Each running ban as the sets hold it: its set and network, and its time left.
        let mut running: HashMap<(&'static str, IpNet), Duration> = HashMap::new();
        for r in self.book.active.values().filter(|r| r.mode == Mode::Ban) {
            if !nft.holds(&r.target) {
                // Recorded under another `ipv6_prefix`: widening it could cover addresses
                // (or protected ones) nobody decided on, narrowing it would leave some out.
                tracing::warn!(
                    "response: the ban of {} (until {}) is not put back into nftables: its sets now group IPv6 by /{}; ban its network by hand if it must go on",
                    r.target,
                    chrono::DateTime::from_timestamp(r.expires, 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default(),
                    self.settings().ipv6_prefix
                );
                continue;
            }
            running.insert(
                (nft.set_of(&r.target), r.target.trunc()),
                Duration::from_secs((r.expires - now).max(1) as u64),
            );
        }
        // An element explains a running ban when it holds that network, in that ban's set,
        // ending when the record says (within a minute). Any other is removed by its own key:
        // nobody recorded it, it starts no network of its set's length, or it was left by
        // another `ipv6_prefix` with another end (its ban, if running, is then put back).
        let mut explained = HashSet::new();
        let mut unknown: Vec<(&'static str, IpAddr)> = Vec::new();
        for l in &present {
            let explains = l.held.is_some_and(|n| {
                running
                    .get(&(l.set, n))
                    .is_some_and(|left| l.left.abs_diff(*left) <= Duration::from_secs(60))
            });
            match l.held {
                Some(n) if explains => {
                    explained.insert((l.set, n));
                }
                _ => unknown.push((l.set, l.key)),
            }
        }
        let add: Vec<(IpNet, Duration)> = running
            .iter()
            .filter(|(k, _)| !explained.contains(*k))
            .map(|((_, n), left)| (*n, *left))
            .collect();
        // Removed first: a key left by another grouping may be a ban's key again.
        let kept = nft.remove(&unknown);
        if let Some((_, e)) = kept.first() {
            tracing::warn!(
                "response: {} of {} elements nobody recorded could not be removed: {e}",
                kept.len(),
                unknown.len()
            );
        }
        nft.apply(&add, &[])?;
        let removed = unknown.len() - kept.len();
        tracing::info!(
            running = self.book.active.len(),
            restored = add.len(),
            removed,
            "response: {} bans running ({} put back into nftables, {removed} elements nobody recorded removed)",
            self.book.active.len(),
            add.len(),
        );
        Ok(())
    }

    /// Replays the store's last window through the rules.
    fn rebuild(&mut self, records: &crate::report::Records, state_dir: &std::path::Path, now: i64) {
        let from = now - self.settings().longest_window().as_secs() as i64;
        let mut failures: Vec<(i64, IpAddr, String)> = Vec::new();
        let read = crate::report::for_each_row(records, state_dir, from, now + 1, &mut |row| {
            if let Ok(ip) = row.ip.parse::<IpAddr>() {
                let user = crate::report::summary::unguard(row.username).to_string();
                failures.push((row.ts, ip, user));
            }
        });
        if let Err(e) = read {
            tracing::warn!(
                "response: cannot read the last window's failures back ({e}); the rules count new failures only"
            );
            return;
        }
        failures.sort_by_key(|f| f.0);
        let n = failures.len();
        let mut missed = Vec::new();
        // The forgiving logins, replayed where they happened among the failures.
        let mut forgiven = std::mem::take(&mut self.book.forgiven);
        forgiven.sort_by_key(|f| f.0);
        let mut logins = forgiven.iter().peekable();
        for (ts, ip, user) in failures {
            while let Some((t, a, u)) = logins.next_if(|l| l.0 < ts) {
                self.engine.forgive(*a, Some(u.as_str()), *t);
            }
            let ip = super::canonical(ip);
            if self.spared(ip).is_some() {
                continue;
            }
            for d in self.engine.failure(
                ts,
                ip,
                Some(&user).filter(|u| !u.is_empty()).map(|u| u.as_str()),
                now,
            ) {
                // Banned (or unbanned by hand) since: the rules start afresh, as they did.
                if !self.book.decided_since(&d.target, ts)
                    && !self.book.active.contains_key(&d.target)
                {
                    missed.push(d);
                }
            }
        }
        for (t, a, u) in logins {
            self.engine.forgive(*a, Some(u.as_str()), *t);
        }
        self.book.forgiven = forgiven;
        tracing::info!(
            failures = n,
            keys = self.engine.keys(),
            "response: the last {} of failures counted again",
            humantime::format_duration(self.settings().longest_window())
        );
        if !missed.is_empty() {
            tracing::warn!(
                "response: {} bans the record lacks (the daemon stopped before making them) are made now",
                missed.len()
            );
            self.ban(missed, now);
        }
    }

    /// Joins the fleet: applies the others' running bans, then listens for new ones.
    fn join_fleet(
        &mut self,
        pg: crate::store::postgres::PgSettings,
        now: i64,
    ) -> std::io::Result<()> {
        let keep = self.settings().max_ban;
        let after = match super::fleet::start(&pg, keep) {
            Ok((last, rows)) => {
                let n = rows.len();
                self.apply_fleet(rows, now);
                tracing::info!(
                    decisions = n,
                    "response: sharing bans with the fleet (PostgreSQL, instance {})",
                    pg.instance
                );
                last
            }
            Err(e) => {
                tracing::error!(
                    "response: cannot read the fleet's bans at start ({e}); they are applied once the database answers"
                );
                0
            }
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let join = super::fleet::listen(pg.clone(), after, tx, stop.clone())?;
        self.fleet = Some(FleetLink {
            publisher: super::fleet::Sharer::start(pg)?,
            rx,
            stop,
            join: Some(join),
        });
        Ok(())
    }

    /// Applies other daemons' decisions under this one's rules (ignore list, own addresses,
    /// mode); bans that ended or already run are skipped.
    fn apply_fleet(&mut self, rows: Vec<super::fleet::FleetRow>, now: i64) {
        let mut bans: Vec<Row> = Vec::new();
        for fr in rows {
            let r = fr.row;
            match r.action {
                Action::Ban => {
                    if r.expires <= now
                        || r.mode == Mode::Log
                        || self.book.running(&r.target, now).is_some()
                        || bans.iter().any(|b| b.target == r.target)
                        // Lifted here (by hand) since it was decided there.
                        || self.book.decided_since(&r.target, r.time + 1)
                    {
                        continue;
                    }
                    if !super::fits(&r.target, self.settings().ipv6_prefix) {
                        tracing::info!(
                            "response: {} banned by {} is a network length this daemon does not ban (ipv6_prefix differs?): not banned here",
                            r.target,
                            fr.instance
                        );
                        continue;
                    }
                    if let Some(why) = super::not_bannable_net(&r.target) {
                        tracing::info!(
                            "response: {} banned by {} is {why}: not banned here",
                            r.target,
                            fr.instance
                        );
                        continue;
                    }
                    if let Some(n) = self.protected_in(&r.target) {
                        tracing::info!(
                            "response: {} banned by {} holds {n}, never banned here",
                            r.target,
                            fr.instance
                        );
                        continue;
                    }
                    bans.push(Row {
                        time: now,
                        rule: format!("{}@{}", r.rule, fr.instance),
                        duration_secs: (r.expires - now) as u64,
                        mode: self.settings().mode,
                        outcome: "ok".into(),
                        ..r
                    });
                }
                Action::Unban => {
                    let lifted: Vec<IpNet> = bans
                        .iter()
                        .map(|b| b.target)
                        .filter(|t| *t == r.target)
                        .collect();
                    bans.retain(|b| b.target != r.target);
                    // Only a ban older than the unban: one this daemon made since stays.
                    let older = self
                        .book
                        .running(&r.target, now)
                        .is_some_and(|b| b.time <= r.time);
                    if lifted.is_empty() && older {
                        let why = format!("{}@{}", r.rule, fr.instance);
                        if let Err(e) = self.lift(&[r.target], &why, now) {
                            tracing::error!("response: cannot lift {}: {e}", r.target);
                        }
                    }
                }
                Action::Forgive | Action::Exec => {}
            }
        }
        if !bans.is_empty() {
            let list: Vec<String> = bans.iter().take(5).map(|b| b.target.to_string()).collect();
            tracing::warn!(
                "response: {} bans from the fleet applied ({}{})",
                bans.len(),
                list.join(", "),
                if bans.len() > 5 { ", ..." } else { "" }
            );
            self.carry_out(bans, now);
        }
    }

    fn run(mut self, rx: std::sync::mpsc::Receiver<Msg>) {
        let mut last_prune = std::time::Instant::now();
        // In a fleet, the others' bans are looked for ten times a second.
        let wait = if self.fleet.is_some() {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        loop {
            let now = chrono::Utc::now().timestamp();
            let from_fleet: Vec<_> = self
                .fleet
                .as_ref()
                .map(|f| f.rx.try_iter().flatten().collect())
                .unwrap_or_default();
            if !from_fleet.is_empty() {
                self.apply_fleet(from_fleet, now);
            }
            match rx.recv_timeout(wait) {
                Ok(Msg::Events(events)) => self.take(events, chrono::Utc::now().timestamp()),
                Ok(Msg::Command(c)) => self.command(c, chrono::Utc::now().timestamp()),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if last_prune.elapsed() >= Duration::from_secs(10) {
                let now = chrono::Utc::now().timestamp();
                self.engine.prune(now);
                self.book.expire(now);
                self.book
                    .prune(now - self.settings().max_ban.as_secs() as i64);
                self.figures
                    .active
                    .store(self.book.active.len() as u64, Relaxed);
                last_prune = std::time::Instant::now();
            }
        }
        // The fleet first: its listener may wait on a full queue, which dropping the
        // receiver frees.
        if let Some(f) = self.fleet.take() {
            let FleetLink {
                publisher,
                rx,
                stop,
                join,
            } = f;
            stop.store(true, Relaxed);
            drop(rx);
            drop(publisher);
            if let Some(j) = join {
                let _ = j.join();
            }
        }
        if let Some((tx, join)) = self.exec.take() {
            self.exec_stop.store(true, Relaxed);
            drop(tx);
            let _ = join.join();
        }
    }

    /// Why `ip`'s failures are not counted, when they are not.
    fn spared(&self, ip: IpAddr) -> Option<&'static str> {
        if self.ignore.iter().any(|n| n.contains(&ip)) {
            return Some("in [response] ignore, or one of this host's addresses");
        }
        super::not_bannable(ip)
    }

    /// One commit's events.
    fn take(&mut self, mut events: Vec<Committed>, now: i64) {
        // In time order across sources; a stable sort on the full timestamp keeps the log's
        // order within a second (a login between failures of one second stays between them).
        events.sort_by_key(|e| match e {
            Committed::Failure(e, _) | Committed::Login(e, _) => e.timestamp.time,
        });
        let mut decisions = Vec::new();
        let mut forgiven = Vec::new();
        let mut enrichment = HashMap::new();
        for e in events {
            match e {
                Committed::Failure(f, enr) => {
                    let ip = super::canonical(f.ip);
                    if self.spared(ip).is_some() {
                        self.figures.spared.fetch_add(1, Relaxed);
                        continue;
                    }
                    let found = self.engine.failure(
                        f.timestamp.time.timestamp(),
                        ip,
                        f.username.as_deref(),
                        now,
                    );
                    if !found.is_empty()
                        && let Some(enr) = enr
                    {
                        enrichment.insert(ip, enr);
                    }
                    decisions.extend(found);
                }
                Committed::Login(l, _) => {
                    let ip = super::canonical(l.ip);
                    let at = l.timestamp.time.timestamp();
                    if self.settings().forgive_on_success
                        && self.engine.forgive(ip, l.username.as_deref(), at)
                    {
                        forgiven.push(Row {
                            ip: Some(ip),
                            username: l.username.as_deref().unwrap_or_default().to_string(),
                            ..Row::new(
                                at,
                                Action::Forgive,
                                IpNet::from(ip),
                                "",
                                self.settings().mode,
                            )
                        });
                        self.figures.forgiven.fetch_add(1, Relaxed);
                        tracing::info!(
                            ip = %ip,
                            "response: {ip} logged in as {}: its failures no longer count",
                            crate::enrich::printable(l.username.as_deref().unwrap_or("?"))
                        );
                    }
                }
            }
        }
        if !forgiven.is_empty()
            && let Err(e) = self.record.append(forgiven.iter())
        {
            tracing::error!("{e}");
        }
        if !decisions.is_empty() {
            self.ban_enriched(decisions, &enrichment, now);
        }
    }

    fn ban(&mut self, decisions: Vec<Decision>, now: i64) {
        self.ban_enriched(decisions, &Default::default(), now);
    }

    /// Carries out the rules' decisions: one nftables transaction, one record append.
    fn ban_enriched(
        &mut self,
        decisions: Vec<Decision>,
        enrichment: &HashMap<IpAddr, crate::enrich::Enrichment>,
        now: i64,
    ) {
        let mut rows: Vec<Row> = Vec::new();
        for d in decisions {
            if self.book.running(&d.target, now).is_some()
                || rows.iter().any(|r| r.target == d.target)
            {
                continue;
            }
            if let Some(n) = self.protected_in(&d.target) {
                tracing::info!(
                    "response: {} not banned by rule {}: it holds {n}, which is never banned",
                    d.target,
                    self.engine.rule(d.rule).name
                );
                continue;
            }
            let rule = self.engine.rule(d.rule).clone();
            let duration = self.length(&d.target, rule.ban, now);
            let e = enrichment.get(&d.ip).cloned().unwrap_or_default();
            tracing::warn!(
                ip = %d.ip,
                target = %d.target,
                rule = %rule.name,
                "response: {} {} for {} (rule {}: {} {} in {}; last from {} as {})",
                if self.settings().mode == Mode::Ban { "banned" } else { "would ban (mode = \"log\")" },
                d.target,
                humantime::format_duration(duration),
                rule.name,
                d.count,
                if rule.key == super::KeyKind::Username { "addresses" } else { "failures" },
                humantime::format_duration(rule.window),
                d.ip,
                crate::enrich::printable(d.username.as_deref().unwrap_or("?")),
            );
            rows.push(Row {
                time: now,
                action: Action::Ban,
                target: d.target,
                rule: rule.name.clone(),
                duration_secs: duration.as_secs(),
                expires: now + duration.as_secs() as i64,
                ip: Some(d.ip),
                username: d.username.unwrap_or_default(),
                mode: self.settings().mode,
                outcome: "ok".into(),
                country: e.country.unwrap_or_default(),
                asn: e.asn,
                as_org: e.as_org.unwrap_or_default(),
            });
        }
        self.carry_out(rows, now);
    }

    /// A ban's length: the rule's, doubled for each ban of the same target within `max_ban`,
    /// up to `max_ban`.
    fn length(&self, target: &IpNet, first: Duration, now: i64) -> Duration {
        let max = self.settings().max_ban;
        let before = self.book.bans_since(target, now - max.as_secs() as i64);
        let factor = 1u32.checked_shl(before.min(31) as u32).unwrap_or(u32::MAX);
        first.saturating_mul(factor).min(max).max(first.min(max))
    }

    /// The protected address or network inside `target`, if any.
    fn protected_in(&self, target: &IpNet) -> Option<IpNet> {
        self.ignore
            .iter()
            .find(|n| target.contains(&n.network()) || n.contains(&target.network()))
            .copied()
    }

    /// Applies and records bans.
    fn carry_out(&mut self, mut rows: Vec<Row>, now: i64) {
        if rows.is_empty() {
            return;
        }
        if let Some(nft) = &self.nft {
            let add: Vec<(IpNet, Duration)> = rows
                .iter()
                .map(|r| (r.target, Duration::from_secs(r.duration_secs)))
                .collect();
            let mut result = nft.apply(&add, &[]);
            if let Err(NftError::Missing { message }) = &result {
                // Our table or a set is gone: a firewall reload (Debian's nftables.conf
                // begins with `flush ruleset`). Set up again, running bans put back, once.
                tracing::warn!(
                    "response: nftables lost our table or a set ({message}); setting it up again"
                );
                result = match self.reconcile(now) {
                    Ok(()) => self.nft.as_ref().expect("checked").apply(&add, &[]),
                    Err(e) => Err(NftError::Failed {
                        message: e.to_string(),
                    }),
                };
            }
            let nft = self.nft.as_ref().expect("checked");
            if let Err(e) = result {
                // One element nft refuses fails the whole transaction: each is tried alone,
                // so that the others are carried out.
                let results: Vec<Result<(), NftError>> = if add.len() > 1 {
                    add.iter()
                        .map(|a| nft.apply(std::slice::from_ref(a), &[]))
                        .collect()
                } else {
                    vec![Err(e)]
                };
                let mut failed = 0;
                for (r, result) in rows.iter_mut().zip(results) {
                    if let Err(e) = result {
                        tracing::error!("response: {} not banned: {e}", r.target);
                        r.outcome = format!("nftables: {e}");
                        failed += 1;
                    }
                }
                self.figures.failed.fetch_add(failed, Relaxed);
            }
        }
        self.figures.bans.fetch_add(rows.len() as u64, Relaxed);
        {
            let mut by_rule = self.figures.by_rule.lock().expect("figures lock");
            for r in &rows {
                *by_rule.entry(r.rule.clone()).or_default() += 1;
            }
        }
        if let Err(e) = self.record.append(rows.iter()) {
            tracing::error!("{e}");
        }
        for r in &rows {
            self.book.apply(r, now);
        }
        if let Some(f) = self
            .fleet
            .as_mut()
            .filter(|_| self.engine.settings().mode == Mode::Ban)
        {
            // This daemon's own decisions (not those the fleet sent: their rule names the
            // instance) go to the others; a dry run's stay here.
            let own: Vec<Row> = rows
                .iter()
                .filter(|r| !r.rule.contains('@'))
                .cloned()
                .collect();
            if !own.is_empty() {
                f.publisher.publish(own);
            }
        }
        if let Some((tx, _)) = &self.exec {
            let mut skipped = Vec::new();
            for r in &rows {
                // Never waits on a slow command: a ban it cannot take now is recorded as not
                // run (and said), not queued without bound.
                if tx.try_send(ExecJob { row: r.clone() }).is_err() {
                    skipped.push(Row {
                        action: Action::Exec,
                        outcome: format!("not run: {EXEC_QUEUE} bans already wait for the command"),
                        ..r.clone()
                    });
                }
            }
            if !skipped.is_empty() {
                tracing::error!(
                    "response: the exec command is far behind: not run for {} bans (see {})",
                    skipped.len(),
                    self.record.path().display()
                );
                self.figures.failed.fetch_add(skipped.len() as u64, Relaxed);
                if let Err(e) = self.record.append(skipped.iter()) {
                    tracing::error!("{e}");
                }
            }
        }
        self.enforce_cap(now);
        self.figures
            .active
            .store(self.book.active.len() as u64, Relaxed);
    }

    /// Lifts the oldest bans beyond `max_bans`.
    fn enforce_cap(&mut self, now: i64) {
        let max = self.settings().max_bans;
        if self.book.active.len() <= max {
            return;
        }
        let mut all: Vec<(i64, IpNet)> = self
            .book
            .active
            .values()
            .map(|r| (r.time, r.target))
            .collect();
        all.sort();
        let lift: Vec<IpNet> = all[..all.len() - max].iter().map(|(_, t)| *t).collect();
        tracing::warn!(
            "response: more than {max} bans running ([response] max_bans): the {} oldest are lifted",
            lift.len()
        );
        if let Err(e) = self.lift(&lift, "max_bans", now) {
            tracing::error!("response: cannot lift the oldest bans: {e}");
        }
    }

    /// Lifts bans: removed from nftables (those it holds), recorded as unbans.
    fn lift(&mut self, targets: &[IpNet], why: &str, now: i64) -> Result<(), String> {
        // Those nftables still holds after the attempt stay banned, and are said.
        let mut not_lifted: Vec<(IpNet, String)> = Vec::new();
        if let Some(nft) = &self.nft {
            let wanted: HashSet<IpNet> = targets.iter().map(IpNet::trunc).collect();
            let del: Vec<(&'static str, IpAddr, IpNet)> = nft
                .list()
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter_map(|l| {
                    l.held
                        .filter(|n| wanted.contains(n))
                        .map(|n| (l.set, l.key, n))
                })
                .collect();
            let keys: Vec<(&'static str, IpAddr)> =
                del.iter().map(|(set, key, _)| (*set, *key)).collect();
            not_lifted = nft
                .remove(&keys)
                .into_iter()
                .map(|(i, e)| (del[i].2, e.to_string()))
                .collect();
        }
        let still_in: HashSet<IpNet> = not_lifted.iter().map(|(n, _)| *n).collect();
        let rows: Vec<Row> = targets
            .iter()
            .filter(|t| !still_in.contains(&t.trunc()))
            .map(|t| Row {
                // A host's address is named, so that `purge --ip` finds its unbans too.
                ip: (t.prefix_len() == t.max_prefix_len()).then(|| t.network()),
                ..Row::new(now, Action::Unban, *t, why, self.settings().mode)
            })
            .collect();
        self.record.append(rows.iter()).map_err(|e| e.to_string())?;
        if why == "manual"
            && self.engine.settings().mode == Mode::Ban
            && let Some(f) = &mut self.fleet
        {
            // An unban by hand lifts the ban everywhere.
            f.publisher.publish(rows.clone());
        }
        for r in &rows {
            self.book.apply(r, now);
            // Its counted failures go too: an unbanned address starts afresh.
            self.engine.forgive(r.target.network(), None, now);
        }
        self.figures
            .active
            .store(self.book.active.len() as u64, Relaxed);
        match not_lifted.first() {
            None => Ok(()),
            Some((n, e)) => Err(format!(
                "{} of {} ban(s) could not be lifted (still in nftables, still recorded), {n} first: {e}",
                not_lifted.len(),
                targets.len()
            )),
        }
    }

    fn command(&mut self, c: Command, now: i64) {
        self.book.expire(now);
        match c {
            Command::List(reply) => {
                let _ = reply.send(Ok(views(&self.book, now)));
            }
            Command::Ban {
                target,
                duration,
                reply,
            } => {
                let answer = self.ban_by_hand(target, duration, now);
                let _ = reply.send(answer);
            }
            Command::Unban { target, reply } => {
                let targets: Vec<IpNet> = match target {
                    Some(t) => self
                        .book
                        .active
                        .keys()
                        .filter(|k| **k == t || t.contains(*k) || k.contains(&t.network()))
                        .copied()
                        .collect(),
                    None => self.book.active.keys().copied().collect(),
                };
                let answer = if targets.is_empty() {
                    Err(match target {
                        Some(t) => format!("{t} is not banned"),
                        None => "no ban is running".into(),
                    })
                } else {
                    self.lift(&targets, "manual", now).map(|()| {
                        let list: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
                        tracing::warn!("response: unbanned by hand: {}", list.join(", "));
                        format!("unbanned {}", list.join(", "))
                    })
                };
                let _ = reply.send(answer);
            }
        }
    }

    fn ban_by_hand(
        &mut self,
        target: IpNet,
        duration: Option<Duration>,
        now: i64,
    ) -> Result<String, String> {
        let target = target.trunc();
        if let Some(why) = super::not_bannable_net(&target) {
            return Err(format!("{target} is {why}: it is never banned"));
        }
        let p = self.settings().ipv6_prefix;
        if !super::fits(&target, p) {
            return Err(format!(
                "{target}: ban an address, an IPv4 /24 or an IPv6 /{p} or /48 (the lengths the rules ban: one set per length)"
            ));
        }
        if let Some(n) = self.protected_in(&target) {
            return Err(format!(
                "{target} holds {n}, which is never banned ([response] ignore, or this host's own address)"
            ));
        }
        let duration = duration
            .or_else(|| self.settings().rules.first().map(|r| r.ban))
            .unwrap_or(Duration::from_secs(3600))
            .min(self.settings().max_ban);
        if self.book.active.contains_key(&target) {
            // A new length: lifted, then banned again.
            self.lift(&[target], "manual", now)?;
        }
        let row = Row {
            duration_secs: duration.as_secs(),
            expires: now + duration.as_secs() as i64,
            ip: Some(target.network()),
            ..Row::new(now, Action::Ban, target, "manual", self.settings().mode)
        };
        self.carry_out(vec![row], now);
        match self.book.active.get(&target) {
            Some(r) if r.outcome == "ok" => {
                tracing::warn!(target = %target, "response: banned by hand: {target} for {}", humantime::format_duration(duration));
                Ok(format!(
                    "banned {target} for {}{}",
                    humantime::format_duration(duration),
                    if self.settings().mode == Mode::Log {
                        " (mode = \"log\": recorded, nothing blocked)"
                    } else {
                        ""
                    }
                ))
            }
            Some(r) => Err(r.outcome.clone()),
            None => Err(format!("{target} could not be banned")),
        }
    }
}

/// The running bans of `book` at `now`, newest first.
pub fn views(book: &Book, now: i64) -> Vec<BanView> {
    let mut list: Vec<BanView> = book
        .active
        .values()
        .filter(|r| r.expires > now)
        .map(|r| BanView {
            target: r.target.to_string(),
            rule: r.rule.clone(),
            started: r.time,
            expires: r.expires,
            remaining_secs: (r.expires - now).max(0) as u64,
            ip: r.ip.map(|i| i.to_string()).unwrap_or_default(),
            username: r.username.clone(),
            country: r.country.clone(),
            asn: r.asn,
            as_org: r.as_org.clone(),
            mode: r.mode.as_str().into(),
            outcome: r.outcome.clone(),
        })
        .collect();
    list.sort_by(|a, b| (b.started, &a.target).cmp(&(a.started, &b.target)));
    list
}

/// The bans as a table for a terminal (attacker text escaped).
pub fn render(list: &[BanView]) -> String {
    if list.is_empty() {
        return "no ban is running\n".into();
    }
    let p = crate::enrich::printable;
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|b| {
            let left =
                humantime::format_duration(Duration::from_secs(b.remaining_secs)).to_string();
            let outcome: String = if b.mode == "log" {
                "log only".to_string()
            } else {
                p(&b.outcome).chars().take(60).collect()
            };
            [
                b.target.clone(),
                p(&b.rule),
                left.split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" "),
                if b.country.is_empty() {
                    "-".into()
                } else {
                    p(&b.country)
                },
                b.asn
                    .map_or_else(|| "-".into(), |a| format!("AS{a} {}", p(&b.as_org))),
                if b.username.is_empty() {
                    "-".into()
                } else {
                    p(&b.username)
                },
                outcome,
            ]
        })
        .collect();
    let head = [
        "TARGET", "RULE", "LEFT", "COUNTRY", "AS", "USERNAME", "OUTCOME",
    ];
    let mut widths = head.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count().min(40));
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (c, w) in cells.iter().zip(widths) {
            let c: String = c.chars().take(40).collect();
            l.push_str(&format!("{c:<w$}  "));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&head.map(String::from));
    for r in &rows {
        line(r);
    }
    out.push_str(&format!("{} bans running\n", list.len()));
    out
}

/// The `exec` command's thread: runs it for each ban, records how it went.
fn run_exec(
    rx: std::sync::mpsc::Receiver<ExecJob>,
    template: &[String],
    timeout: Duration,
    record: &Record,
    stop: &std::sync::atomic::AtomicBool,
) {
    for job in rx {
        let r = &job.row;
        if stop.load(Relaxed) {
            // The daemon is stopping: what is queued is recorded, not run (each could take
            // exec_timeout, past the stop's deadline).
            let row = Row {
                action: Action::Exec,
                outcome: "not run: the daemon stopped first".into(),
                ..r.clone()
            };
            if let Err(e) = record.append(std::iter::once(&row)) {
                tracing::error!("{e}");
            }
            continue;
        }
        let facts = Facts {
            ip: r
                .ip
                .map(|i| i.to_string())
                .unwrap_or_else(|| r.target.network().to_string()),
            key: r.target.to_string(),
            rule: &r.rule,
            duration: r.duration_secs,
            username: &r.username,
        };
        let outcome = match exec::run(template, &facts, timeout) {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                tracing::error!(target = %r.target, "response: the exec command failed: {e}");
                e
            }
        };
        let row = Row {
            time: chrono::Utc::now().timestamp(),
            action: Action::Exec,
            outcome,
            ..r.clone()
        };
        if let Err(e) = record.append(std::iter::once(&row)) {
            tracing::error!("{e}");
        }
    }
}
