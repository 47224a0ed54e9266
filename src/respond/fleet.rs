//! Bans shared by a fleet (`[response] share = true`, with the PostgreSQL store): a ban decided
//! on one mail server is applied by every daemon of the fleet, through PostgreSQL itself.
//!
//! A daemon writes each ban (and each unban by hand) it decides into the `bans` table and
//! `NOTIFY maillogsentinel_bans` in the same transaction, so the notification goes out only
//! once the row is there. Every daemon keeps a connection that `LISTEN`s; on a notification
//! (and every few seconds anyway, so that a notification lost with a connection costs a few
//! seconds, not a ban) it reads the rows after the last id it applied, of other instances, and
//! hands them to its responder, which applies them under its own rules: its own `ignore` list
//! and this host's addresses, its own mode. No server of our own; a database down delays
//! sharing and loses nothing (bans to publish wait in memory, bounded and counted).

use std::sync::Arc;

use postgres::fallible_iterator::FallibleIterator;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::record::{Action, Row};
use crate::store::postgres::PgSettings;

/// The notification channel.
pub const CHANNEL: &str = "maillogsentinel_bans";
/// How often the listener reads the table without a notification.
pub const POLL: Duration = Duration::from_secs(5);
/// Bans waiting to be published at most (while the database is down).
pub const MAX_PENDING: usize = 100_000;

/// A ban or unban another daemon decided.
#[derive(Debug, Clone)]
pub struct FleetRow {
    /// Its id in the table.
    pub id: i64,
    /// Which daemon.
    pub instance: String,
    /// The decision.
    pub row: Row,
}

fn action_word(a: Action) -> &'static str {
    match a {
        Action::Ban => "ban",
        Action::Unban => "unban",
        Action::Forgive => "forgive",
        Action::Exec => "exec",
    }
}

/// Writes this daemon's decisions to the table, on a thread of its own: a database slow to
/// answer, or to refuse a connection, never holds the responder (nor, behind it, the commits).
#[derive(Debug)]
pub struct Sharer {
    tx: Option<std::sync::mpsc::SyncSender<Vec<Row>>>,
    join: Option<std::thread::JoinHandle<()>>,
    /// Decisions not shared because too many were waiting.
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl Sharer {
    /// Starts the thread.
    pub fn start(settings: PgSettings) -> std::io::Result<Sharer> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Row>>(1024);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = dropped.clone();
        let join = std::thread::Builder::new()
            .name("response-share".into())
            .spawn(move || {
                let mut p = Publisher {
                    settings,
                    client: None,
                    pending: Vec::new(),
                    failing: false,
                    next_try: Instant::now(),
                };
                loop {
                    match rx.recv_timeout(Duration::from_secs(1)) {
                        Ok(rows) => p.pending.extend(rows),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                            // A last write if the database is there; no new connection.
                            if p.client.is_some() {
                                p.flush();
                            }
                            if !p.pending.is_empty() {
                                tracing::warn!(
                                    "response: {} bans not shared with the fleet (the database was down when the daemon stopped)",
                                    p.pending.len()
                                );
                            }
                            return;
                        }
                    }
                    if p.pending.len() > MAX_PENDING {
                        let over = p.pending.len() - MAX_PENDING;
                        p.pending.drain(..over);
                        counted.fetch_add(over as u64, Relaxed);
                        tracing::warn!(
                            "response: the fleet's database has been down too long: {over} bans not shared (the oldest)"
                        );
                    }
                    p.flush();
                }
            })?;
        Ok(Sharer {
            tx: Some(tx),
            join: Some(join),
            dropped,
        })
    }

    /// Hands decisions to the thread (never waits: when 1,024 batches wait already, these are
    /// counted and dropped, and said).
    pub fn publish(&self, rows: Vec<Row>) {
        let n = rows.len() as u64;
        if let Some(tx) = &self.tx
            && tx.try_send(rows).is_err()
        {
            let all = self.dropped.fetch_add(n, Relaxed) + n;
            if crate::ratelimit::allow("fleet queue full") {
                tracing::warn!(
                    "response: the fleet's queue is full: {n} bans not shared ({all} in all)"
                );
            }
        }
    }
}

impl Drop for Sharer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// The sharing thread's state.
struct Publisher {
    settings: PgSettings,
    client: Option<postgres::Client>,
    /// Decisions not written yet.
    pending: Vec<Row>,
    failing: bool,
    /// While the database fails: not before this.
    next_try: Instant,
}

impl Publisher {
    /// Writes what is queued, in one transaction with its notification (while the database
    /// fails, at most every [`POLL`]).
    fn flush(&mut self) {
        if self.pending.is_empty() || Instant::now() < self.next_try {
            return;
        }
        match self.write() {
            Ok(()) => {
                if self.failing {
                    tracing::info!("response: the fleet's database takes bans again");
                    self.failing = false;
                }
                self.pending.clear();
            }
            Err(e) => {
                self.client = None;
                self.next_try = Instant::now() + POLL;
                if !self.failing {
                    tracing::error!(
                        "response: cannot share bans with the fleet ({e}); they wait and are sent when the database answers"
                    );
                    self.failing = true;
                }
            }
        }
    }

    fn write(&mut self) -> Result<(), String> {
        if self.client.is_none() {
            self.client =
                Some(crate::store::postgres::connect(&self.settings).map_err(|e| e.to_string())?);
        }
        let client = self.client.as_mut().expect("just connected");
        let mut tx = client.transaction().map_err(|e| e.to_string())?;
        let insert = tx
            .prepare(
                "INSERT INTO bans (instance, time, action, target, rule, duration_secs, expires, ip, username, mode, outcome, country, asn, as_org)
                 VALUES ($1, to_timestamp($2::float8), $3, $4::text::cidr, $5, $6, CASE WHEN $7::float8 > 0 THEN to_timestamp($7::float8) END, $8::text::inet, $9, $10, $11, $12, $13, $14)",
            )
            .map_err(|e| e.to_string())?;
        for r in &self.pending {
            tx.execute(
                &insert,
                &[
                    &self.settings.instance,
                    &(r.time as f64),
                    &action_word(r.action),
                    &r.target.to_string(),
                    &r.rule,
                    &(r.duration_secs as i64),
                    &(r.expires as f64),
                    &r.ip.map(|i| i.to_string()),
                    &r.username,
                    &r.mode.as_str(),
                    &r.outcome,
                    &r.country,
                    &r.asn.map(i64::from),
                    &r.as_org,
                ],
            )
            .map_err(|e| e.to_string())?;
        }
        tx.batch_execute(&format!("NOTIFY {CHANNEL}"))
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())
    }
}

/// Rows of other instances after `after`, oldest first (at most 10,000).
fn read_since(
    client: &mut postgres::Client,
    instance: &str,
    after: i64,
) -> Result<Vec<FleetRow>, postgres::Error> {
    let rows = client.query(
        "SELECT id, instance, extract(epoch FROM time)::bigint, action, target::text, rule, duration_secs,
                COALESCE(extract(epoch FROM expires)::bigint, 0), host(ip), username, mode, outcome, country, asn, as_org
         FROM bans WHERE id > $1 AND instance <> $2 AND action IN ('ban', 'unban') ORDER BY id LIMIT 10000",
        &[&after, &instance],
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let action = match r.get::<_, &str>(3) {
                "ban" => Action::Ban,
                _ => Action::Unban,
            };
            Some(FleetRow {
                id: r.get(0),
                instance: r.get(1),
                row: Row {
                    time: r.get(2),
                    action,
                    target: super::parse_net(r.get(4))?,
                    rule: r.get(5),
                    duration_secs: r.get::<_, i64>(6).max(0) as u64,
                    expires: r.get(7),
                    ip: r.get::<_, Option<&str>>(8).and_then(|s| s.parse().ok()),
                    username: r.get(9),
                    mode: if r.get::<_, &str>(10) == "log" {
                        super::Mode::Log
                    } else {
                        super::Mode::Ban
                    },
                    outcome: r.get(11),
                    country: r.get(12),
                    asn: r
                        .get::<_, Option<i64>>(13)
                        .and_then(|a| u32::try_from(a).ok()),
                    as_org: r.get(14),
                },
            })
        })
        .collect())
}

/// The listener: a thread that hands other instances' decisions to `tx`, from the rows after
/// `after` on (at start: the bans of the others still running). It ends when `stop` is set or
/// the responder is gone.
pub fn listen(
    settings: PgSettings,
    mut after: i64,
    tx: std::sync::mpsc::SyncSender<Vec<FleetRow>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("response-fleet".into())
        .spawn(move || {
            let mut failing = false;
            while !stop.load(Relaxed) {
                let mut client = match crate::store::postgres::connect(&settings) {
                    Ok(c) => c,
                    Err(e) => {
                        if !failing {
                            tracing::error!(
                                "response: cannot listen for the fleet's bans ({e}); retrying every 5 s"
                            );
                            failing = true;
                        }
                        sleep_unless(&stop, POLL);
                        continue;
                    }
                };
                if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")) {
                    tracing::error!("response: LISTEN {CHANNEL}: {e}");
                    sleep_unless(&stop, POLL);
                    continue;
                }
                if failing {
                    tracing::info!("response: listening for the fleet's bans again");
                    failing = false;
                }
                loop {
                    if stop.load(Relaxed) {
                        return;
                    }
                    let last_read = Instant::now();
                    match read_since(&mut client, &settings.instance, after) {
                        Ok(rows) => {
                            if let Some(last) = rows.last() {
                                after = last.id;
                                if tx.send(rows).is_err() {
                                    return;
                                }
                                // A full page: read on at once.
                                continue;
                            }
                        }
                        Err(e) => {
                            tracing::error!("response: cannot read the fleet's bans ({e}); reconnecting");
                            break;
                        }
                    }
                    // Wait for a notification, the poll interval, or the stop.
                    {
                        let mut n = client.notifications();
                        let mut it = n.timeout_iter(Duration::from_millis(250));
                        while !stop.load(Relaxed) && last_read.elapsed() < POLL {
                            match it.next() {
                                Ok(Some(_)) | Err(_) => break,
                                Ok(None) => {}
                            }
                        }
                    }
                    if client.is_closed() {
                        break;
                    }
                }
            }
        })
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Relaxed) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last id in the table, and the other instances' bans still running (applied at start).
pub fn start(settings: &PgSettings, keep: Duration) -> Result<(i64, Vec<FleetRow>), String> {
    let mut client = crate::store::postgres::connect(settings).map_err(|e| e.to_string())?;
    // Old decisions go (those older than `keep` whose ban ended).
    client
        .execute(
            "DELETE FROM bans WHERE time < now() - make_interval(secs => $1) AND (expires IS NULL OR expires < now())",
            &[&(keep.as_secs() as f64)],
        )
        .map_err(|e| e.to_string())?;
    let last: i64 = client
        .query_one("SELECT COALESCE(max(id), 0) FROM bans", &[])
        .map_err(|e| e.to_string())?
        .get(0);
    // Every decision of the others still kept, page by page (the responder applies them in
    // order: a ban, then maybe its unban).
    let mut running = Vec::new();
    let mut after = 0;
    while after < last {
        let page = read_since(&mut client, &settings.instance, after).map_err(|e| e.to_string())?;
        let Some(end) = page.last().map(|r| r.id) else {
            break;
        };
        running.extend(page.into_iter().filter(|r| r.id <= last));
        after = end;
    }
    Ok((last, running))
}
