//! Compromise signals: "did any of these addresses then log in successfully?"
//!
//! A consumer of committed events: the sink hands it each commit's failures and logins (in log
//! order), so that an alert is never raised on a row a crash could take back. It keeps a
//! bounded, time-windowed [`Memory`] of failures per address, per username and per network,
//! rebuilt at start from the intrusion record's last window (a restart forgets nothing), and
//! checks every successful login against it. A login raises an alert when, within `[alerts]
//! window`:
//!
//! - its address had failed logins: for another username, or at least `typo_failures` for its
//!   own (fewer are a user who mistyped, not an attack);
//! - its username had failures from at least `username_addresses` addresses (a distributed
//!   brute force that may have found the password);
//! - its address is in a network (`/24`, IPv6 `/64`) that failed, though the address did not.
//!
//! Each alert is one warning in the journal with the facts, and a row of
//! `state_dir/alerts.csv`; mail is sent by the daemon (see [`AlertMail`]).

pub mod memory;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use memory::{Memory, Seen};

pub use crate::pipeline::Committed;

use crate::enrich::Enrichment;
use crate::parse::AuthEvent;

/// The alert record's columns.
pub const ALERT_COLUMNS: [&str; 14] = [
    "timestamp",
    "server",
    "service",
    "ip",
    "username",
    "mechanism",
    "signals",
    "address_failures",
    "username_addresses",
    "network",
    "network_failures",
    "country",
    "asn",
    "as_org",
];

/// `[alerts]` as the daemon uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    /// How far back failures count.
    pub window: Duration,
    /// Distinct failing addresses that make a username's login an alert.
    pub username_addresses: usize,
    /// Failures for its own username from the login's address that make it an alert (fewer
    /// are typos).
    pub typo_failures: u32,
    /// Mail each alert (grouped within `mail_delay`) to the report's recipients.
    pub mail: bool,
    /// How long alerts are gathered into one mail; two mails are at least five times this apart.
    pub mail_delay: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            window: Duration::from_secs(24 * 3600),
            username_addresses: 10,
            typo_failures: 3,
            mail: false,
            mail_delay: Duration::from_secs(60),
        }
    }
}

/// Why a login is suspicious.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Its address failed before.
    Address,
    /// Its username was tried from many addresses.
    Username,
    /// Its network failed before (not the address itself).
    Network,
}

impl Signal {
    /// A short name for files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Address => "address",
            Signal::Username => "username",
            Signal::Network => "network",
        }
    }
}

/// A successful login after failures.
#[derive(Debug, Clone)]
pub struct Alert {
    /// The login.
    pub login: AuthEvent,
    /// Its enrichment (country, AS), when enrichment is on.
    pub enrichment: Option<Enrichment>,
    /// What the window held.
    pub seen: Seen,
    /// Why it is an alert (at least one).
    pub signals: Vec<Signal>,
    /// The window, for the text.
    pub window: Duration,
}

impl Alert {
    /// The signals as `address+username`.
    pub fn signal_names(&self) -> String {
        let names: Vec<&str> = self.signals.iter().map(|s| s.as_str()).collect();
        names.join("+")
    }
}

/// The journal's line (the username is shown escaped: it is the client's text, even after a
/// successful login).
impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.login;
        let window = humantime::format_duration(self.window);
        write!(
            f,
            "possible compromise: {:?} logged in from {} ({}) after",
            l.username.as_deref().unwrap_or(""),
            l.ip,
            l.service
        )?;
        let mut facts = Vec::new();
        let s = &self.seen;
        if self.signals.contains(&Signal::Address) {
            let whose = if s.address_same_user_only {
                "all for this username"
            } else {
                "for other usernames too"
            };
            facts.push(format!(
                "{} failed logins from this address ({whose})",
                s.address_failures
            ));
        }
        if self.signals.contains(&Signal::Username) {
            facts.push(format!(
                "{} failed logins on this username from {}{} addresses",
                s.username_failures,
                s.username_addresses,
                if s.username_addresses >= 2 {
                    " or more"
                } else {
                    ""
                }
            ));
        }
        if self.signals.contains(&Signal::Network) {
            facts.push(format!(
                "{} failed logins from its network {}",
                s.network_failures,
                memory::network_name(l.ip)
            ));
        }
        write!(f, " {} in the last {window}", facts.join(", and "))?;
        if let Some(e) = &self.enrichment {
            if let Some(c) = &e.country {
                write!(f, "; country {}", crate::enrich::printable(c))?;
            }
            if let Some(asn) = e.asn {
                write!(f, ", AS{asn}")?;
                if let Some(org) = &e.as_org {
                    write!(f, " {}", crate::enrich::printable(org))?;
                }
            }
        }
        Ok(())
    }
}

/// Checks logins against the memory of failures.
#[derive(Debug)]
pub struct Detector {
    settings: AlertSettings,
    memory: Memory,
}

/// When a committed event was logged, in seconds.
fn ts(e: &Committed) -> i64 {
    match e {
        Committed::Failure(e, _) | Committed::Login(e, _) => e.timestamp.time.timestamp(),
    }
}

impl Detector {
    /// A detector with an empty memory.
    pub fn new(settings: AlertSettings) -> Self {
        let memory = Memory::new(
            settings.window.as_secs() as i64,
            settings.username_addresses,
        );
        Detector { settings, memory }
    }

    /// The memory (for status and tests).
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// Remembers a failure read back from the record at start.
    pub fn remember(&mut self, ts: i64, ip: IpAddr, username: Option<&str>) {
        self.memory.failure(ts, ip, username);
    }

    /// Takes one commit's events (sorted here by time, failures before logins of the same
    /// second) and returns the alerts they raise.
    pub fn take(&mut self, mut events: Vec<Committed>) -> Vec<Alert> {
        events.sort_by_key(|e| (ts(e), matches!(e, Committed::Login(..))));
        let mut alerts = Vec::new();
        for e in events {
            match e {
                Committed::Failure(f, _) => {
                    self.memory
                        .failure(f.timestamp.time.timestamp(), f.ip, f.username.as_deref())
                }
                Committed::Login(l, enrichment) => {
                    if let Some(a) = self.check(l, enrichment) {
                        alerts.push(a);
                    }
                }
            }
        }
        alerts
    }

    fn check(&self, login: AuthEvent, enrichment: Option<Enrichment>) -> Option<Alert> {
        let s = self.settings.clone();
        let seen = self.memory.seen(
            login.timestamp.time.timestamp(),
            login.ip,
            login.username.as_deref(),
        );
        let mut signals = Vec::new();
        let typo = seen.address_same_user_only && seen.address_failures < s.typo_failures;
        if seen.address_failures > 0 && !typo {
            signals.push(Signal::Address);
        }
        if seen.username_addresses >= s.username_addresses {
            signals.push(Signal::Username);
        }
        if seen.address_failures == 0 && seen.network_failures > 0 {
            signals.push(Signal::Network);
        }
        (!signals.is_empty()).then_some(Alert {
            login,
            enrichment,
            seen,
            signals,
            window: s.window,
        })
    }

    /// Drops failures older than the window at `now`.
    pub fn prune(&mut self, now: i64) {
        self.memory.prune(now);
    }
}

/// Reads the intrusion record's rows since `from` into the detector (through the report's time
/// index: only the chunks that can hold them are read). Returns the failures remembered.
pub fn rebuild(
    detector: &mut Detector,
    records: &crate::report::Records,
    state_dir: &Path,
    from: i64,
    to: i64,
) -> Result<u64, crate::report::ReportError> {
    let mut n = 0;
    crate::report::for_each_row(records, state_dir, from, to, &mut |row| {
        if let Ok(ip) = row.ip.parse::<IpAddr>() {
            let user = crate::report::summary::unguard(row.username);
            detector.remember(row.ts, ip, Some(user).filter(|u| !u.is_empty()));
            n += 1;
        }
    })?;
    Ok(n)
}

/// Appends alerts to `state_dir/alerts.csv` (created with a header, mode 0640). Attacker text is
/// neutralised for spreadsheets like the records'.
pub fn record(path: &Path, alerts: &[Alert]) -> std::io::Result<()> {
    let n = |s: &str| crate::sink::csv::neutralise(s).into_owned();
    crate::state::append_csv(
        path,
        &ALERT_COLUMNS,
        alerts.iter().map(|a| {
            let l = &a.login;
            let e = a.enrichment.clone().unwrap_or_default();
            [
                l.timestamp.to_rfc3339(),
                n(&l.server),
                n(&l.service),
                l.ip.to_string(),
                n(l.username.as_deref().unwrap_or("")),
                n(&l.mechanism),
                a.signal_names(),
                a.seen.address_failures.to_string(),
                a.seen.username_addresses.to_string(),
                memory::network_name(l.ip),
                a.seen.network_failures.to_string(),
                n(e.country.as_deref().unwrap_or("")),
                e.asn.map(|a| a.to_string()).unwrap_or_default(),
                n(e.as_org.as_deref().unwrap_or("")),
            ]
        }),
    )
}

/// Where the alert record is kept.
pub fn alerts_path(state_dir: &Path) -> PathBuf {
    crate::state::path(state_dir, crate::state::ALERTS_CSV)
}

/// Alert mail: grouped (one mail for the alerts of `group`), two mails at least five times
/// `group` apart, so that an attack that succeeds many times cannot flood the postmaster's
/// mailbox; subjects and headers carry no attacker text (a count only).
#[derive(Debug)]
pub struct AlertMail {
    group: Duration,
    pending: Vec<Alert>,
    first_pending: Option<std::time::Instant>,
    last_sent: Option<std::time::Instant>,
}

impl AlertMail {
    /// Alerts gathered for `group` go in one mail.
    pub fn new(group: Duration) -> Self {
        AlertMail {
            group,
            pending: Vec::new(),
            first_pending: None,
            last_sent: None,
        }
    }

    /// The least time between two mails.
    pub fn min_gap(&self) -> Duration {
        self.group * 5
    }

    /// Adds alerts (raised at `now`) to the next mail.
    pub fn add(&mut self, alerts: &[Alert], now: std::time::Instant) {
        if alerts.is_empty() {
            return;
        }
        self.first_pending.get_or_insert(now);
        self.pending.extend_from_slice(alerts);
    }

    /// The alerts to mail now, if it is time (and then they are taken).
    pub fn due(&mut self, now: std::time::Instant) -> Option<Vec<Alert>> {
        let first = self.first_pending?;
        let grouped = now.duration_since(first) >= self.group;
        let spaced = self
            .last_sent
            .is_none_or(|t| now.duration_since(t) >= self.min_gap());
        if grouped && spaced {
            self.first_pending = None;
            self.last_sent = Some(now);
            Some(std::mem::take(&mut self.pending))
        } else {
            None
        }
    }

    /// The mail's subject: a count, never attacker text.
    pub fn subject(prefix: &str, alerts: &[Alert]) -> String {
        format!(
            "{prefix} {} possible compromise{}: logins after failed logins",
            alerts.len(),
            if alerts.len() == 1 { "" } else { "s" }
        )
    }

    /// The mail's plain-text body: one paragraph per alert (text only, no HTML; control
    /// characters in attacker text are escaped by the alert's own formatting).
    pub fn body(alerts: &[Alert]) -> String {
        let mut s = String::from(
            "Successful logins that followed failed logins (maillogsentinel alerts).\n\
             Check each account: if the login was not its owner's, change the password and end its sessions.\n\n",
        );
        for a in alerts {
            s.push_str(&format!("{}: {a}\n\n", a.login.timestamp.to_rfc3339()));
        }
        s
    }
}

/// Commits queued for the alerts thread (each a commit's events).
pub const QUEUE: usize = 64;

/// Starts the alerts thread, after rebuilding the memory from `csv`'s last window (here, before
/// anything new is committed, so that no failure is remembered twice). The thread takes each
/// commit's events from the returned sender, logs and records alerts, and mails them (grouped,
/// spaced) when `mail` is given. It ends when the sender is dropped, after mailing what is
/// pending.
pub fn spawn(
    settings: AlertSettings,
    records: crate::report::Records,
    state_dir: PathBuf,
    mail: Option<crate::report::mail::MailSettings>,
) -> std::io::Result<(
    std::sync::mpsc::SyncSender<Vec<Committed>>,
    std::thread::JoinHandle<()>,
)> {
    // The record exists from the first start (its header only, until an alert): reports
    // tell "no login after failures" from "logins not watched" by it.
    record(&alerts_path(&state_dir), &[])?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Committed>>(QUEUE);
    let mut detector = Detector::new(settings.clone());
    let now = chrono::Utc::now().timestamp();
    let from = now - settings.window.as_secs() as i64;
    match rebuild(&mut detector, &records, &state_dir, from, now + 1) {
        Ok(n) => {
            let (a, u, net) = detector.memory().len();
            tracing::info!(
                failures = n,
                addresses = a,
                usernames = u,
                networks = net,
                "alerts: the last {} of failures remembered",
                humantime::format_duration(settings.window)
            );
        }
        Err(e) => tracing::warn!(
            "alerts: cannot read the window's failures back ({e}); logins are checked against new failures only"
        ),
    }
    let join = std::thread::Builder::new()
        .name("alerts".into())
        .spawn(move || {
            let path = alerts_path(&state_dir);
            let mut mailer = AlertMail::new(settings.mail_delay);
            let mut last_prune = std::time::Instant::now();
            let mut full_said = 0;
            loop {
                let got = rx.recv_timeout(settings.mail_delay.min(Duration::from_secs(5)));
                let open = !matches!(got, Err(std::sync::mpsc::RecvTimeoutError::Disconnected));
                if let Ok(events) = got {
                    let alerts = detector.take(events);
                    for a in &alerts {
                        tracing::warn!(ip = %a.login.ip, signals = %a.signal_names(), "{a}");
                    }
                    if !alerts.is_empty() {
                        if let Err(e) = record(&path, &alerts) {
                            tracing::error!(path = %path.display(), "cannot record alerts: {e}");
                        }
                        if mail.is_some() {
                            mailer.add(&alerts, std::time::Instant::now());
                        }
                    }
                    if detector.memory().full() > full_said {
                        full_said = detector.memory().full();
                        tracing::warn!(
                            "alerts: the memory is full ({} keys per kind): {full_said} failures not remembered",
                            memory::MAX_KEYS
                        );
                    }
                }
                if last_prune.elapsed() >= Duration::from_secs(60) {
                    detector.prune(chrono::Utc::now().timestamp());
                    last_prune = std::time::Instant::now();
                }
                if let Some(settings) = &mail {
                    // At the end, what is pending goes at once.
                    let now = if open {
                        std::time::Instant::now()
                    } else {
                        std::time::Instant::now() + mailer.min_gap() * 2
                    };
                    if let Some(alerts) = mailer.due(now) {
                        if open {
                            // Off this thread: a slow relay must not hold the commits back.
                            let (settings, dir) = (settings.clone(), state_dir.clone());
                            let _ = std::thread::Builder::new()
                                .name("alert-mail".into())
                                .spawn(move || send_mail(&settings, &dir, &alerts));
                        } else {
                            send_mail(settings, &state_dir, &alerts);
                        }
                    }
                }
                if !open {
                    break;
                }
            }
        })?;
    Ok((tx, join))
}

/// Mails alerts; a mail that cannot be sent is kept in the outbox, retried with the reports.
fn send_mail(settings: &crate::report::mail::MailSettings, state_dir: &Path, alerts: &[Alert]) {
    let subject = AlertMail::subject(&settings.subject_prefix, alerts);
    match crate::report::mail::send_text(
        settings,
        &subject,
        &AlertMail::body(alerts),
        Some(state_dir),
    ) {
        Ok(()) => tracing::info!(alerts = alerts.len(), "alert mail sent"),
        Err(e) => tracing::error!("alert mail: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Timestamp;

    fn event(ts: i64, ip: &str, user: &str) -> AuthEvent {
        AuthEvent {
            timestamp: Timestamp {
                time: chrono::DateTime::from_timestamp(ts, 0).unwrap().into(),
                frac_digits: 0,
            },
            server: "mx".into(),
            service: "dovecot/imap-login".into(),
            ip: ip.parse().unwrap(),
            username: Some(user.into()),
            mechanism: "PLAIN".into(),
            reason: Default::default(),
            client_hostname: None,
        }
    }

    fn detector() -> Detector {
        Detector::new(AlertSettings {
            window: Duration::from_secs(3600),
            username_addresses: 3,
            typo_failures: 3,
            mail: false,
            mail_delay: Duration::from_secs(60),
        })
    }

    fn signals(alerts: &[Alert]) -> Vec<String> {
        alerts.iter().map(|a| a.signal_names()).collect()
    }

    #[test]
    fn a_login_from_an_address_that_failed_is_an_alert() {
        let mut d = detector();
        let alerts = d.take(vec![
            Committed::Login(event(1000, "203.0.113.5", "admin"), None),
            Committed::Failure(event(999, "203.0.113.5", "root"), None),
        ]);
        // Sorted by time: the failure came first.
        assert_eq!(signals(&alerts), ["address"]);
        let text = alerts[0].to_string();
        assert!(
            text.contains("\"admin\"") && text.contains("203.0.113.5"),
            "{text}"
        );
        assert!(
            text.contains("for other usernames too") && text.contains("1h"),
            "{text}"
        );
        // Long after the window: nothing.
        let alerts = d.take(vec![Committed::Login(
            event(9000, "203.0.113.5", "admin"),
            None,
        )]);
        assert!(alerts.is_empty());
    }

    #[test]
    fn a_users_own_typos_are_no_alert_until_there_are_many() {
        let mut d = detector();
        let typo = vec![
            Committed::Failure(event(1000, "192.0.2.7", "alice"), None),
            Committed::Failure(event(1001, "192.0.2.7", "alice"), None),
            Committed::Login(event(1002, "192.0.2.7", "alice"), None),
        ];
        assert!(d.take(typo).is_empty());
        let alerts = d.take(vec![
            Committed::Failure(event(1003, "192.0.2.7", "alice"), None),
            Committed::Login(event(1004, "192.0.2.7", "alice"), None),
        ]);
        assert_eq!(signals(&alerts), ["address"]);
        assert!(alerts[0].to_string().contains("all for this username"));
    }

    #[test]
    fn distributed_attempts_on_a_username_and_networks_are_alerts() {
        let mut d = detector();
        let mut events: Vec<Committed> = (1..=3)
            .map(|i| Committed::Failure(event(1000 + i, &format!("198.51.100.{i}"), "info"), None))
            .collect();
        events.push(Committed::Login(event(1100, "203.0.113.77", "info"), None));
        // Another address of a network that failed.
        events.push(Committed::Login(event(1100, "198.51.100.200", "bob"), None));
        assert_eq!(signals(&d.take(events)), ["username", "network"]);
    }

    #[test]
    fn alerts_are_recorded_with_neutralised_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = alerts_path(dir.path());
        let mut d = detector();
        let alerts = d.take(vec![
            Committed::Failure(event(1000, "203.0.113.5", "x"), None),
            Committed::Login(event(1001, "203.0.113.5", "=cmd|' /C calc'!A0"), None),
        ]);
        record(&path, &alerts).unwrap();
        record(&path, &alerts).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("timestamp,server").count(), 1, "{text}");
        assert_eq!(text.matches("'=cmd").count(), 2, "{text}");
        assert!(text.contains(",address,1,"), "{text}");
    }

    #[test]
    fn alert_mail_groups_a_minute_and_spaces_mails() {
        let mut m = AlertMail::new(Duration::from_secs(60));
        let group = Duration::from_secs(60);
        let mut d = detector();
        let alerts = d.take(vec![
            Committed::Failure(event(1000, "203.0.113.5", "x"), None),
            Committed::Login(event(1001, "203.0.113.5", "evil\r\nBcc: a@b"), None),
        ]);
        let t0 = std::time::Instant::now();
        m.add(&alerts, t0);
        assert!(m.due(t0).is_none());
        let sent = m.due(t0 + group).unwrap();
        assert_eq!(sent.len(), 1);
        let subject = AlertMail::subject("[mx]", &sent);
        assert_eq!(
            subject,
            "[mx] 1 possible compromise: logins after failed logins"
        );
        // The body escapes control characters.
        assert!(!AlertMail::body(&sent).contains("\r\nBcc"));
        m.add(&alerts, t0 + group);
        assert!(m.due(t0 + group * 2).is_none(), "spaced by five groups");
        assert!(m.due(t0 + group * 6).is_some());
    }
}
