//! The configuration file as written: one serde struct per section, every key with its
//! documented default, unknown keys rejected, values checked while they are read (durations
//! need a unit, line limits a range, addresses a form) so that an error names the key.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// The configuration file as written, with defaults filled in.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// `[sources]`: the logs to read and where state is kept.
    pub sources: RawSources,
    /// `[output]`: where the record of attempts goes.
    pub output: RawOutput,
    /// `[daemon]`: how `maillogsentinel run` behaves as a service.
    pub daemon: RawDaemon,
    /// `[enrich]`: reverse DNS, country and AS of each attacker.
    pub enrich: RawEnrich,
    /// `[report]`: scheduled and on-demand summaries by email.
    pub report: RawReport,
    /// `[alerts]`: successful logins after failures.
    pub alerts: RawAlerts,
    /// `[metrics]`: Prometheus metrics and a health check over HTTP.
    pub metrics: RawMetrics,
    /// `[response]`: banning attackers (nftables, a command).
    pub response: RawResponse,
}

/// `[response]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawResponse {
    /// Whether the responder runs at all.
    pub enabled: bool,
    /// `ban`, or `log` (a dry run: decisions logged and recorded, nothing blocked).
    pub mode: crate::respond::Mode,
    /// IPv6 addresses are banned by this prefix (a host usually has a whole /64).
    pub ipv6_prefix: u8,
    /// Repeat offenders' bans double up to this.
    pub max_ban: DurationStr,
    /// Addresses and networks never banned (the host's own addresses are added).
    #[serde(deserialize_with = "networks")]
    pub ignore: Vec<String>,
    /// A successful login from an address clears its failures.
    pub forgive_on_success: bool,
    /// The ports banned addresses can no longer reach.
    pub ports: Vec<u16>,
    /// Active bans at most; beyond it the oldest are lifted.
    pub max_bans: usize,
    /// Whether bans go into the nftables sets of `table inet maillogsentinel`.
    pub nftables: bool,
    /// A command run for each ban: program and arguments, `{ip}`, `{key}`, `{rule}`,
    /// `{duration}` (seconds) and `{username}` replaced inside arguments; no shell.
    pub exec: Vec<String>,
    /// How long the command may run before it is killed.
    pub exec_timeout: DurationStr,
    /// Share bans with every daemon of the fleet (the PostgreSQL store).
    pub share: bool,
    /// `[[response.rule]]`: when to ban.
    pub rule: Vec<RawRule>,
}

impl Default for RawResponse {
    fn default() -> Self {
        RawResponse {
            enabled: false,
            mode: crate::respond::Mode::Ban,
            ipv6_prefix: 64,
            max_ban: DurationStr::secs(7 * 24 * 3600),
            ignore: Vec::new(),
            forgive_on_success: true,
            ports: crate::respond::MAIL_PORTS.to_vec(),
            max_bans: 100_000,
            nftables: true,
            exec: Vec::new(),
            exec_timeout: DurationStr::secs(10),
            share: false,
            rule: vec![RawRule::default()],
        }
    }
}

/// `[[response.rule]]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Named in logs, the record and `bans`.
    pub name: String,
    /// What failures are counted by: `ip`, `net` or `username`.
    pub key: crate::respond::KeyKind,
    /// Failures (for `username`: addresses) that make a ban.
    pub max: u32,
    /// How far back failures count.
    pub window: DurationStr,
    /// How long a first ban lasts.
    pub ban: DurationStr,
}

impl Default for RawRule {
    fn default() -> Self {
        RawRule {
            name: "per-address".into(),
            key: crate::respond::KeyKind::Ip,
            max: 5,
            window: DurationStr::secs(600),
            ban: DurationStr::secs(3600),
        }
    }
}

/// A list of addresses or networks (`"192.0.2.0/24"`, `"2001:db8::1"`), each checked.
fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    for s in &list {
        if crate::respond::parse_net(s).is_none() {
            return Err(serde::de::Error::custom(format!(
                "{s:?} is neither an address nor a network: write e.g. \"192.0.2.7\", \"198.51.100.0/24\" or \"2001:db8::/32\""
            )));
        }
    }
    Ok(list)
}

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// Where `/metrics` and `/health` are served (`"127.0.0.1:9154"`); "" for nowhere.
    #[serde(deserialize_with = "listen_address")]
    pub listen: String,
}

/// An `address:port` to listen on, or "".
fn listen_address<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() || s.parse::<std::net::SocketAddr>().is_ok() {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!(
            "{s:?} is not an address and port to listen on: write e.g. \"127.0.0.1:9154\" (or \"[::1]:9154\"), or \"\" for none"
        )))
    }
}

/// `[alerts]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawAlerts {
    /// How far back failures count for a login's alert.
    pub window: DurationStr,
    /// A login of a username that failed from at least this many addresses is an alert.
    pub username_addresses: usize,
    /// Failures from the login's address for its own username that make an alert (fewer are
    /// typos); failures for other usernames always do.
    pub typo_failures: u32,
    /// Mail alerts to `[report] to` (default: when `to` is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail: Option<bool>,
    /// How long alerts are gathered into one mail (and a fifth of the least time between two).
    pub mail_delay: DurationStr,
}

impl Default for RawAlerts {
    fn default() -> Self {
        RawAlerts {
            window: DurationStr::secs(24 * 3600),
            username_addresses: 10,
            typo_failures: 3,
            mail: None,
            mail_delay: DurationStr::secs(60),
        }
    }
}

/// `[report]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawReport {
    /// When the daemon sends a report: cron with seconds (`sec min hour day month weekday`), in
    /// the local time zone; "" for never.
    #[serde(deserialize_with = "cron_schedule")]
    pub schedule: String,
    /// Recipients; none: reports are not mailed.
    #[serde(deserialize_with = "mailboxes")]
    pub to: Vec<String>,
    /// Sender.
    #[serde(deserialize_with = "mailbox")]
    pub from: String,
    /// Start of every subject.
    pub subject_prefix: String,
    /// `smtp` or `sendmail`.
    pub transport: TransportKind,
    /// First wait before an undelivered report is sent again (doubling up to 30 min).
    pub retry: DurationStr,
    /// `[report.smtp]`
    pub smtp: RawSmtp,
}

/// How report mail leaves.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// SMTP (`[report.smtp]`).
    Smtp,
    /// The local sendmail binary.
    Sendmail,
}

/// `[report.smtp]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawSmtp {
    /// Server.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    pub security: crate::report::mail::Security,
    /// Login name ("" for none).
    pub username: String,
    /// File holding the password (first line).
    pub password_file: PathBuf,
    /// The password itself: refused unless the config file is readable by its owner only.
    pub password: String,
}

impl Default for RawSmtp {
    fn default() -> Self {
        RawSmtp {
            host: "localhost".into(),
            port: 25,
            security: crate::report::mail::Security::None,
            username: String::new(),
            password_file: PathBuf::new(),
            password: String::new(),
        }
    }
}

impl Default for RawReport {
    fn default() -> Self {
        RawReport {
            schedule: "0 0 8 * * *".into(),
            to: Vec::new(),
            from: "maillogsentinel@localhost".into(),
            subject_prefix: "[maillogsentinel]".into(),
            transport: TransportKind::Smtp,
            retry: DurationStr::secs(30),
            smtp: RawSmtp::default(),
        }
    }
}

/// Parses a report schedule (cron with seconds); "" means none.
pub fn parse_schedule(s: &str) -> Result<Option<croner::Cron>, String> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .build()
        .parse(s)
        .map(Some)
        .map_err(|e| format!("invalid schedule {s:?} ({e}): write cron with seconds, like \"0 0 8 * * *\" (08:00:00 every day)"))
}

fn cron_schedule<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    parse_schedule(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

fn mailbox<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<lettre::message::Mailbox>()
        .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a mail address ({e})")))?;
    Ok(s)
}

fn mailboxes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    for s in &v {
        s.parse::<lettre::message::Mailbox>()
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a mail address ({e})")))?;
    }
    Ok(v)
}

/// `[enrich]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawEnrich {
    /// Look up the reverse DNS name of each attacking address.
    pub reverse_dns: bool,
    /// DNS servers to ask (`"IP"` or `"IP:port"`, `"[IPv6]:port"`); empty: /etc/resolv.conf.
    #[serde(deserialize_with = "socket_addrs")]
    pub dns_servers: Vec<String>,
    /// Per-query timeout.
    pub dns_timeout: DurationStr,
    /// Require the PTR name to resolve back to the address (status `mismatch` otherwise).
    pub verify_reverse_dns: bool,
    /// MaxMind DB file for countries ("" for none).
    pub country_db: PathBuf,
    /// MaxMind DB file for AS numbers and organisations ("" for none; may be the same file).
    pub asn_db: PathBuf,
    /// Reverse DNS answers kept in memory at most.
    pub cache_size: u64,
    /// How long an answer is kept.
    pub cache_ttl: DurationStr,
    /// How long a negative answer (nxdomain, timeout, servfail, error) is kept.
    pub negative_cache_ttl: DurationStr,
    /// Reverse lookups in flight at most.
    pub concurrency: usize,
    /// Where `geoip update` fetches `country_db` (`{year}`, `{month}` filled in; "" to skip).
    pub country_db_url: String,
    /// Where `geoip update` fetches `asn_db` ("" to skip).
    pub asn_db_url: String,
}

impl Default for RawEnrich {
    fn default() -> Self {
        RawEnrich {
            reverse_dns: true,
            dns_servers: Vec::new(),
            dns_timeout: DurationStr::secs(2),
            verify_reverse_dns: true,
            country_db: PathBuf::from("/var/lib/maillogsentinel/dbip-country-lite.mmdb"),
            asn_db: PathBuf::from("/var/lib/maillogsentinel/dbip-asn-lite.mmdb"),
            cache_size: 100_000,
            cache_ttl: DurationStr::secs(6 * 3600),
            negative_cache_ttl: DurationStr::secs(15 * 60),
            concurrency: 256,
            country_db_url:
                "https://download.db-ip.com/free/dbip-country-lite-{year}-{month}.mmdb.gz".into(),
            asn_db_url: "https://download.db-ip.com/free/dbip-asn-lite-{year}-{month}.mmdb.gz"
                .into(),
        }
    }
}

/// Parses `"IP"`, `"IP:port"` or `"[IPv6]:port"` (port 53 when not given).
pub fn parse_dns_server(s: &str) -> Option<std::net::SocketAddr> {
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa);
    }
    s.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
}

fn socket_addrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if let Some(bad) = v.iter().find(|s| parse_dns_server(s).is_none()) {
        return Err(serde::de::Error::custom(format!(
            "{bad:?} is not a DNS server address: write \"IP\" or \"IP:port\" (\"[IPv6]:port\")"
        )));
    }
    Ok(v)
}

/// `[sources]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawSources {
    /// The mail logs to follow.
    #[serde(deserialize_with = "non_empty_paths")]
    pub files: Vec<PathBuf>,
    /// Directory for checkpoints and other state.
    pub state_dir: PathBuf,
    /// Lines longer than this many bytes are skipped (and counted).
    #[serde(deserialize_with = "line_limit")]
    pub max_line_bytes: usize,
    /// On the first start (no checkpoints yet), read the rotated history before following.
    pub backfill: Backfill,
    /// How often files are checked when no change notification came (the fallback for
    /// filesystems without inotify, and a safety net everywhere else).
    pub poll_interval: DurationStr,
    /// Use change notifications (inotify); with false, files are only polled.
    pub notify: bool,
    /// How long a rotated-away file is kept open and read after it last grew (a writer that
    /// has not reopened its log yet still writes there).
    pub rotate_wait: DurationStr,
    /// Read the systemd journal: `"auto"` (when no configured file exists), `true`, `false`.
    pub journal: JournalMode,
    /// Which journal entries: `FIELD=value` terms (OR within a field, AND across fields);
    /// empty means facility mail (`SYSLOG_FACILITY=2`), what rsyslog writes to mail.log.
    #[serde(deserialize_with = "journal_matches")]
    pub journal_match: Vec<String>,
    /// Read this journal directory or file instead of the system journal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_path: Option<PathBuf>,
    /// The server name recorded for lines that carry no host field (Dovecot's own log file,
    /// `log_path`); unset means this machine's hostname.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "server_name"
    )]
    pub server: Option<String>,
}

/// `[daemon]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawDaemon {
    /// How long SIGTERM may take to drain the pipeline and write the last checkpoint.
    pub shutdown_timeout: DurationStr,
    /// How often a one-line statistics summary is logged (`"0s"` turns it off).
    pub stats_interval: DurationStr,
    /// How often reading progress is saved when no row was written (rows always save it).
    pub checkpoint_interval: DurationStr,
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            shutdown_timeout: DurationStr::secs(10),
            stats_interval: DurationStr::secs(15 * 60),
            checkpoint_interval: DurationStr::secs(5),
        }
    }
}

/// A duration written as a string with a unit (`"500ms"`, `"2s"`, `"6h"`, `"180d"`), as every
/// duration in the configuration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationStr(pub Duration);

impl DurationStr {
    /// Whole seconds.
    pub const fn secs(s: u64) -> Self {
        DurationStr(Duration::from_secs(s))
    }
}

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(DurationStr).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?} ({e}): write a number with a unit, like \"2s\", \"500ms\", \"6h\" or \"180d\""
            ))
        })
    }
}

impl Serialize for DurationStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// `[output]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawOutput {
    /// The intrusion CSV rows are appended to.
    pub csv: PathBuf,
    /// The logins CSV successful logins are appended to; unset: `logins.csv` beside `csv`;
    /// `""` keeps no record of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logins: Option<PathBuf>,
    /// Which store keeps the records: `csv` (the default), `sqlite`, `postgres`.
    pub store: crate::store::StoreKind,
    /// The SQLite database (`store = "sqlite"`); unset: `events.db` beside `csv`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<PathBuf>,
    /// The PostgreSQL database (`store = "postgres"`): `postgres://USER@HOST[:PORT]/DATABASE`,
    /// with libpq's `sslmode` and `sslrootcert` when wanted; never a password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    /// The file holding the PostgreSQL password (its first line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// This daemon's name for its positions in a shared PostgreSQL database; unset: the
    /// hostname.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Rows older than this are deleted from a database store (hourly); unset: kept for ever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<DurationStr>,
}

impl RawOutput {
    /// The SQLite database's path.
    pub fn sqlite_path(&self) -> PathBuf {
        match &self.sqlite {
            Some(p) => p.clone(),
            None => self.csv.with_file_name("events.db"),
        }
    }

    /// The logins record's path, `None` when none is kept.
    pub fn logins_path(&self) -> Option<PathBuf> {
        match &self.logins {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p.clone()),
            None => Some(self.csv.with_file_name("logins.csv")),
        }
    }
}

/// Default of `sources.max_line_bytes`: Postfix lines stay far below it (usernames are cut at
/// 100 bytes), so only garbage is longer.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
/// Smallest accepted `sources.max_line_bytes`: a real failure line can be ~600 bytes.
pub const MIN_MAX_LINE_BYTES: usize = 1024;
/// Largest accepted `sources.max_line_bytes`: it is held in memory per file.
pub const MAX_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

impl Default for RawSources {
    fn default() -> Self {
        RawSources {
            files: vec![PathBuf::from("/var/log/mail.log")],
            state_dir: PathBuf::from("/var/lib/maillogsentinel"),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            backfill: Backfill::Auto,
            poll_interval: DurationStr::secs(1),
            notify: true,
            rotate_wait: DurationStr::secs(60),
            journal: JournalMode::Auto,
            journal_match: Vec::new(),
            journal_path: None,
            server: None,
        }
    }
}

impl Default for RawOutput {
    fn default() -> Self {
        RawOutput {
            csv: PathBuf::from("/var/lib/maillogsentinel/intrusions.csv"),
            logins: None,
            store: crate::store::StoreKind::Csv,
            sqlite: None,
            postgres: None,
            password_file: None,
            instance: None,
            retention: None,
        }
    }
}

/// `FIELD=value` terms as `journalctl` takes them: a field name of upper-case letters, digits
/// and `_` (not starting with a digit), `=`, any value.
fn journal_matches<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    for term in &v {
        if let Err(why) = crate::source::journal::Match::parse(term) {
            return Err(serde::de::Error::custom(why));
        }
    }
    Ok(v)
}

/// A server name for the record: one word of printable characters.
fn server_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = String::deserialize(d)?;
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(serde::de::Error::custom(format!(
            "{v:?} is not a server name: write one word such as \"mx1.example.org\", or leave the key out for this machine's hostname"
        )));
    }
    Ok(Some(v))
}

fn non_empty_paths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    let v = Vec::<PathBuf>::deserialize(d)?;
    if v.is_empty() {
        return Err(serde::de::Error::custom("must name at least one log file"));
    }
    if let Some(p) = v.iter().find(|p| p.as_os_str().is_empty()) {
        return Err(serde::de::Error::custom(format!("empty file name {p:?}")));
    }
    Ok(v)
}

fn line_limit<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = u64::deserialize(d)?;
    if !(MIN_MAX_LINE_BYTES as u64..=MAX_MAX_LINE_BYTES as u64).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "{v} is out of range: give a number of bytes from {MIN_MAX_LINE_BYTES} to {MAX_MAX_LINE_BYTES}"
        )));
    }
    Ok(v as usize)
}

/// A setting written `"auto"`, `true` or `false`.
///
/// `sources.backfill` (whether a first start, without a checkpoint, reads the logs' history):
/// `"auto"` (the default) yes into an output without rows, not into one that already holds rows
/// (a new or emptied state directory would otherwise record them all again); `true` always;
/// `false` never, start at the end of each live log.
///
/// `sources.journal` (whether the systemd journal is read): `"auto"` (the default) only when
/// none of the configured files exists at start and a journal does; `true` beside the files;
/// `false` never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoBool {
    /// `"auto"`: decided from what is there (see the type's documentation).
    Auto,
    /// `true`.
    Always,
    /// `false`.
    Never,
}

/// `sources.backfill` (see [`AutoBool`]).
pub type Backfill = AutoBool;
/// `sources.journal` (see [`AutoBool`]).
pub type JournalMode = AutoBool;

impl Serialize for AutoBool {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AutoBool::Auto => s.serialize_str("auto"),
            AutoBool::Always => s.serialize_bool(true),
            AutoBool::Never => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for AutoBool {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(AutoBool::Always),
            Raw::Bool(false) => Ok(AutoBool::Never),
            Raw::Text(t) if t == "auto" => Ok(AutoBool::Auto),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "expected \"auto\", true or false, found {t:?}"
            ))),
        }
    }
}
