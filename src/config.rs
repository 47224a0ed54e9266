//! The configuration file: TOML, unknown keys rejected, every value checked while it is read so
//! that an error names the key and the line (like `nginx -t`).
//!
//! [`RawConfig`] is the file as written, with documented defaults for every key; it is turned
//! once into [`Config`], which is all the rest of the program sees. A missing default file means
//! built-in defaults, so `maillogsentinel scan FILE` works with no setup; a file named with
//! `-c` must exist.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// Where the configuration is read from when `-c` is not given.
pub const DEFAULT_PATH: &str = "/etc/maillogsentinel/config.toml";

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
        }
    }
}

impl Default for RawOutput {
    fn default() -> Self {
        RawOutput {
            csv: PathBuf::from("/var/lib/maillogsentinel/intrusions.csv"),
        }
    }
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

/// `sources.backfill`: whether a first start (no checkpoint) reads the logs' history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backfill {
    /// `"auto"` (the default): yes into an output without rows; not into one that already
    /// holds rows (a new or emptied state directory would otherwise record them all again).
    Auto,
    /// `true`: always, also into an output that holds rows.
    Always,
    /// `false`: never; start at the end of each live log.
    Never,
}

impl Serialize for Backfill {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Backfill::Auto => s.serialize_str("auto"),
            Backfill::Always => s.serialize_bool(true),
            Backfill::Never => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for Backfill {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(Backfill::Always),
            Raw::Bool(false) => Ok(Backfill::Never),
            Raw::Text(t) if t == "auto" => Ok(Backfill::Auto),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "expected \"auto\", true or false, found {t:?}"
            ))),
        }
    }
}

/// Where a configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Read from this file.
    File(PathBuf),
    /// The default file does not exist: built-in defaults.
    BuiltIn,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::BuiltIn => write!(f, "built-in defaults ({DEFAULT_PATH} does not exist)"),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where it came from.
    pub origin: Origin,
    /// The effective settings as a file would state them (for `check` and reload diffs).
    pub raw: RawConfig,
    /// The logs to read.
    pub files: Vec<PathBuf>,
    /// Directory for checkpoints and other state.
    pub state_dir: PathBuf,
    /// Lines longer than this are skipped.
    pub max_line_bytes: usize,
    /// The intrusion CSV.
    pub csv: PathBuf,
    /// Read rotated history on the first start.
    pub backfill: Backfill,
    /// Polling fallback interval.
    pub poll_interval: Duration,
    /// Use change notifications.
    pub notify: bool,
    /// How long a rotated-away file is still read after it last grew.
    pub rotate_wait: Duration,
    /// Deadline for a clean stop.
    pub shutdown_timeout: Duration,
    /// Interval of the statistics line (zero: never).
    pub stats_interval: Duration,
    /// Interval of progress-only checkpoints.
    pub checkpoint_interval: Duration,
    /// Enrichment settings.
    pub enrich: crate::enrich::EnrichSettings,
    /// What `geoip update` fetches.
    pub geoip_downloads: Vec<crate::enrich::update::Download>,
    /// Report schedule (validated cron), "" for none.
    pub report_schedule: String,
    /// First retry delay of undelivered reports.
    pub report_retry: Duration,
    /// Where reports are mailed; `None` when `[report] to` is empty.
    pub report_mail: Option<crate::report::mail::MailSettings>,
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value is wrong. The message names
    /// the line and shows it.
    #[error("invalid config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line, column and the offending key.
        message: String,
    },
}

impl Config {
    /// Loads the configuration: from `path` when given (it must exist), else from
    /// [`DEFAULT_PATH`] if it exists, else built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_or_default(path, Path::new(DEFAULT_PATH))
    }

    /// [`Config::load`] with the default file's path given (tests must never read the host's).
    fn load_or_default(path: Option<&Path>, default: &Path) -> Result<Config, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p, true),
            None => (default, false),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Config::from_toml(&text, Origin::File(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !required => {
                Ok(Config::from_raw(RawConfig::default(), Origin::BuiltIn))
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses and validates a configuration text.
    pub fn from_toml(text: &str, origin: Origin) -> Result<Config, ConfigError> {
        let path = match &origin {
            Origin::File(p) => p.clone(),
            Origin::BuiltIn => PathBuf::from("(built-in)"),
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let problems = validate(&raw, text);
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                path,
                message: problems.join("\n"),
            });
        }
        let mail =
            report_mail(&raw.report, &origin, text).map_err(|message| ConfigError::Invalid {
                path: path.clone(),
                message,
            })?;
        let mut config = Config::from_raw(raw, origin);
        config.report_mail = mail;
        Ok(config)
    }

    fn from_raw(raw: RawConfig, origin: Origin) -> Config {
        Config {
            origin,
            files: raw.sources.files.clone(),
            state_dir: raw.sources.state_dir.clone(),
            max_line_bytes: raw.sources.max_line_bytes,
            csv: raw.output.csv.clone(),
            backfill: raw.sources.backfill,
            poll_interval: raw.sources.poll_interval.0,
            notify: raw.sources.notify,
            rotate_wait: raw.sources.rotate_wait.0,
            shutdown_timeout: raw.daemon.shutdown_timeout.0,
            stats_interval: raw.daemon.stats_interval.0,
            checkpoint_interval: raw.daemon.checkpoint_interval.0,
            enrich: enrich_settings(&raw.enrich),
            geoip_downloads: geoip_downloads(&raw.enrich),
            report_schedule: raw.report.schedule.clone(),
            report_retry: raw.report.retry.0,
            report_mail: None,
            raw,
        }
    }

    /// What differs between two configurations, one line per changed key (for reload logs).
    pub fn changes(&self, new: &Config) -> Vec<String> {
        let (old, new) = (flatten(&self.raw), flatten(&new.raw));
        let mut out = Vec::new();
        for (k, v) in &new {
            match old.get(k) {
                Some(o) if o == v => {}
                Some(o) => out.push(format!("{k}: {o} -> {v}")),
                None => out.push(format!("{k}: {v}")),
            }
        }
        out
    }

    /// The effective settings as TOML.
    pub fn to_toml(&self) -> String {
        let mut raw = self.raw.clone();
        if !raw.report.smtp.password.is_empty() {
            raw.report.smtp.password = "(hidden)".into();
        }
        toml::to_string_pretty(&raw).expect("the configuration always serialises")
    }
}

/// Mail settings from `[report]`, checking the password rules.
fn report_mail(
    raw: &RawReport,
    origin: &Origin,
    text: &str,
) -> Result<Option<crate::report::mail::MailSettings>, String> {
    use crate::report::mail::{MailSettings, Transport};
    if raw.to.is_empty() {
        return Ok(None);
    }
    let parse = |s: &str| {
        s.parse::<lettre::message::Mailbox>()
            .expect("validated while reading")
    };
    let transport = match raw.transport {
        TransportKind::Sendmail => Transport::Sendmail,
        TransportKind::Smtp => {
            let smtp = &raw.smtp;
            let password = if !smtp.password.is_empty() {
                if let Origin::File(p) = origin {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(p)
                        .map(|m| m.permissions().mode())
                        .unwrap_or(0o644);
                    if mode & 0o077 != 0 {
                        return Err(format!(
                            "report.smtp.password (line {}) is in a file others can read (mode {:o}): move it to password_file, or chmod 600 {}",
                            line_of(text, "report.smtp.password"),
                            mode & 0o777,
                            p.display()
                        ));
                    }
                }
                Some(smtp.password.clone())
            } else if !smtp.password_file.as_os_str().is_empty() {
                let text = std::fs::read_to_string(&smtp.password_file).map_err(|e| {
                    format!(
                        "report.smtp.password_file {}: {e}",
                        smtp.password_file.display()
                    )
                })?;
                Some(text.lines().next().unwrap_or_default().to_string())
            } else {
                None
            };
            let credentials = if smtp.username.is_empty() {
                None
            } else {
                Some((
                    smtp.username.clone(),
                    password.ok_or_else(|| {
                        "report.smtp.username is set but neither password_file nor password is"
                            .to_string()
                    })?,
                ))
            };
            Transport::Smtp {
                host: smtp.host.clone(),
                port: smtp.port,
                security: smtp.security,
                credentials,
            }
        }
    };
    Ok(Some(MailSettings {
        to: raw.to.iter().map(|s| parse(s)).collect(),
        from: parse(&raw.from),
        subject_prefix: raw.subject_prefix.clone(),
        transport,
    }))
}

fn geoip_downloads(raw: &RawEnrich) -> Vec<crate::enrich::update::Download> {
    let mut out: Vec<crate::enrich::update::Download> = Vec::new();
    for (url, target) in [
        (&raw.country_db_url, &raw.country_db),
        (&raw.asn_db_url, &raw.asn_db),
    ] {
        if url.is_empty() || target.as_os_str().is_empty() {
            continue;
        }
        // One file serving both keys (IPinfo Lite) is fetched once.
        if !out.iter().any(|d| &d.target == target) {
            out.push(crate::enrich::update::Download {
                url: url.clone(),
                target: target.clone(),
            });
        }
    }
    out
}

fn enrich_settings(raw: &RawEnrich) -> crate::enrich::EnrichSettings {
    let path = |p: &PathBuf| (!p.as_os_str().is_empty()).then(|| p.clone());
    crate::enrich::EnrichSettings {
        dns: raw.reverse_dns.then(|| crate::enrich::DnsSettings {
            servers: raw
                .dns_servers
                .iter()
                .filter_map(|s| parse_dns_server(s))
                .collect(),
            timeout: raw.dns_timeout.0,
            verify: raw.verify_reverse_dns,
        }),
        country_db: path(&raw.country_db),
        asn_db: path(&raw.asn_db),
        cache_size: raw.cache_size,
        cache_ttl: raw.cache_ttl.0,
        negative_ttl: raw.negative_cache_ttl.0,
        concurrency: raw.concurrency.max(1),
    }
}

/// `section.key = value` for every key, for diffs.
fn flatten(raw: &RawConfig) -> std::collections::BTreeMap<String, String> {
    let value = toml::Value::try_from(raw).expect("the configuration always serialises");
    let mut out = std::collections::BTreeMap::new();
    if let toml::Value::Table(sections) = value {
        for (section, v) in sections {
            if let toml::Value::Table(keys) = v {
                for (k, v) in keys {
                    out.insert(format!("{section}.{k}"), v.to_string());
                }
            }
        }
    }
    out
}

/// The line (1-based) where `section.key` is set, or 0 when it is not in the text.
/// Every problem with values that parse but cannot work, each naming its key and line: a
/// zero or absurdly small interval (it would spin or flood the log), one too large for the
/// clock, a log listed twice (also through a symlink) or beside its own rotation, an output
/// that is a log or a state file.
fn validate(raw: &RawConfig, text: &str) -> Vec<String> {
    const YEAR: Duration = Duration::from_secs(366 * 24 * 3600);
    let ms = Duration::from_millis;
    let mut problems = Vec::new();
    let mut problem = |key: &str, what: String| {
        let line = line_of(text, key);
        problems.push(if line > 0 {
            format!("{key} (line {line}): {what}")
        } else {
            format!("{key}: {what}")
        });
    };
    // (key, value, smallest, may it be zero to turn the feature off)
    for (key, d, min, zero_ok) in [
        (
            "sources.poll_interval",
            raw.sources.poll_interval.0,
            ms(10),
            false,
        ),
        (
            "sources.rotate_wait",
            raw.sources.rotate_wait.0,
            ms(100),
            false,
        ),
        (
            "daemon.shutdown_timeout",
            raw.daemon.shutdown_timeout.0,
            ms(100),
            false,
        ),
        (
            "daemon.checkpoint_interval",
            raw.daemon.checkpoint_interval.0,
            ms(10),
            false,
        ),
        (
            "daemon.stats_interval",
            raw.daemon.stats_interval.0,
            Duration::from_secs(1),
            true,
        ),
        (
            "enrich.dns_timeout",
            raw.enrich.dns_timeout.0,
            ms(10),
            false,
        ),
        (
            "report.retry",
            raw.report.retry.0,
            Duration::from_secs(1),
            false,
        ),
        (
            "enrich.cache_ttl",
            raw.enrich.cache_ttl.0,
            Duration::ZERO,
            true,
        ),
        (
            "enrich.negative_cache_ttl",
            raw.enrich.negative_cache_ttl.0,
            Duration::ZERO,
            true,
        ),
    ] {
        if d.is_zero() && !zero_ok {
            problem(key, "must be longer than zero".into());
        } else if !d.is_zero() && d < min {
            problem(
                key,
                format!(
                    "{d:?} is too short (at least {min:?}): it would keep the daemon busy or flood its log"
                ),
            );
        } else if d > YEAR {
            problem(key, format!("{d:?} is too long (at most a year)"));
        }
    }
    if !(1..=4096).contains(&raw.enrich.concurrency) {
        problem(
            "enrich.concurrency",
            format!(
                "{} is out of range (1 to 4096 lookups at once)",
                raw.enrich.concurrency
            ),
        );
    }
    if raw.sources.state_dir.as_os_str().is_empty() {
        problem(
            "sources.state_dir",
            "is empty: name a directory (default /var/lib/maillogsentinel)".into(),
        );
    }
    if raw.output.csv.as_os_str().is_empty() {
        problem(
            "output.csv",
            "is empty: name a file (default /var/lib/maillogsentinel/intrusions.csv)".into(),
        );
    }
    // Logs: each read once. The same file twice (literally, through a symlink or another path)
    // or a rotation of a listed log (read with its history already) would record rows twice.
    let files = &raw.sources.files;
    for (i, a) in files.iter().enumerate() {
        for b in &files[..i] {
            if same_file(a, b) {
                problem(
                    "sources.files",
                    format!(
                        "{} and {} are the same file: list it once",
                        b.display(),
                        a.display()
                    ),
                );
            } else if let Some((log, rotated)) = rotation_of(a, b) {
                problem(
                    "sources.files",
                    format!(
                        "{} would be read twice: as a log of its own, and as a rotation of {} (a name that starts with a listed log's name and . or - is read as part of its history); list only {}",
                        rotated.display(),
                        log.display(),
                        log.display()
                    ),
                );
            }
        }
        if same_file(a, &raw.output.csv) {
            problem(
                "output.csv",
                format!("is the log {}: name another file", a.display()),
            );
        } else if rotation_of(a, &raw.output.csv).is_some() {
            problem(
                "output.csv",
                format!(
                    "would be read as a rotation of the log {} (its name starts with the log's and . or -): name another file",
                    a.display()
                ),
            );
        }
    }
    let state_files = ["checkpoint.json", "lock", "report-state.json"];
    for name in state_files {
        if same_file(&raw.output.csv, &raw.sources.state_dir.join(name)) {
            problem(
                "output.csv",
                format!("is the state file {name} in sources.state_dir: name another file"),
            );
        }
    }
    problems
}

/// Whether two paths name the same file: the same path once `.`/`..` and symlinks are resolved
/// (for files that exist), or the same device and inode.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        return (ma.dev(), ma.ino()) == (mb.dev(), mb.ino());
    }
    resolved(a) == resolved(b)
}

/// A path with its directory's symlinks resolved where it exists (the file itself may not).
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(d), Some(n)) => std::fs::canonicalize(if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        })
        .map_or_else(|_| p.to_path_buf(), |d| d.join(n)),
        _ => p.to_path_buf(),
    }
}

/// `(log, rotated)` when one of `a`, `b` is a rotated name of the other (`mail.log.1`,
/// `mail.log-20261122.gz` beside `mail.log`).
fn rotation_of<'p>(a: &'p Path, b: &'p Path) -> Option<(&'p Path, &'p Path)> {
    let is_rotation = |log: &Path, other: &Path| {
        let (rl, ro) = (resolved(log), resolved(other));
        let (Some(ld), Some(od)) = (rl.parent(), ro.parent()) else {
            return false;
        };
        let (Some(ln), Some(on)) = (rl.file_name(), ro.file_name()) else {
            return false;
        };
        let (ln, on) = (ln.as_encoded_bytes(), on.as_encoded_bytes());
        ld == od
            && on.len() > ln.len() + 1
            && on.starts_with(ln)
            && matches!(on[ln.len()], b'.' | b'-')
    };
    if is_rotation(a, b) {
        Some((a, b))
    } else if is_rotation(b, a) {
        Some((b, a))
    } else {
        None
    }
}

fn line_of(text: &str, dotted: &str) -> usize {
    let (section, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = "";
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = name.trim();
        } else if current == section && t.split('=').next().is_some_and(|k| k.trim() == key) {
            return i + 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_toml(text, Origin::File("t.toml".into()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn values_that_parse_but_cannot_work_are_all_listed_with_their_lines() {
        let e = err(
            "[sources]\nstate_dir = \"\"\npoll_interval = \"1ns\"\n[daemon]\nstats_interval = \"100000d\"\n[enrich]\nconcurrency = 1000000000\n[output]\ncsv = \"\"\n",
        );
        for want in [
            "sources.state_dir (line 2): is empty",
            "sources.poll_interval (line 3): 1ns is too short",
            "daemon.stats_interval (line 5):",
            "too long",
            "enrich.concurrency (line 7): 1000000000 is out of range",
            "output.csv (line 9): is empty",
        ] {
            assert!(e.contains(want), "{want:?} missing from:\n{e}");
        }
        assert_eq!(e.lines().count(), 5, "one line per problem: {e}");
    }

    #[test]
    fn a_log_read_twice_or_written_to_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let log = dir.path().join("mail.log");
        std::fs::write(&log, "x\n").unwrap();
        std::os::unix::fs::symlink(&log, dir.path().join("alias.log")).unwrap();
        for (files, want) in [
            (
                format!("\"{d}/mail.log\", \"{d}/mail.log\""),
                "are the same file",
            ),
            (
                format!("\"{d}/mail.log\", \"{d}/alias.log\""),
                "are the same file",
            ),
            (
                format!("\"{d}/mail.log\", \"{d}/./mail.log\""),
                "are the same file",
            ),
            (
                format!("\"{d}/mail.log.1\", \"{d}/mail.log\""),
                "mail.log.1 would be read twice",
            ),
        ] {
            let e = err(&format!(
                "[sources]\nfiles = [{files}]\nstate_dir = \"{d}/state\"\n[output]\ncsv = \"{d}/out.csv\"\n"
            ));
            assert!(
                e.contains("sources.files (line 2)") && e.contains(want),
                "{files}: {e}"
            );
        }
        for (csv, want) in [
            (format!("{d}/alias.log"), "is the log"),
            (
                format!("{d}/mail.log-rows.csv"),
                "would be read as a rotation",
            ),
            (
                format!("{d}/state/checkpoint.json"),
                "is the state file checkpoint.json",
            ),
        ] {
            let e = err(&format!(
                "[sources]\nfiles = [\"{d}/mail.log\"]\nstate_dir = \"{d}/state\"\n[output]\ncsv = \"{csv}\"\n"
            ));
            assert!(
                e.contains("output.csv (line 5)") && e.contains(want),
                "{csv}: {e}"
            );
        }
        // Distinct logs, and names that merely share a start, are fine.
        Config::from_toml(
            &format!(
                "[sources]\nfiles = [\"{d}/mail.log\", \"{d}/mail.logger\", \"{d}/mail.err\"]\n"
            ),
            Origin::File("t.toml".into()),
        )
        .unwrap();
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("", Origin::File("t.toml".into())).unwrap();
        assert_eq!(c.raw, RawConfig::default());
        assert_eq!(c.files, vec![PathBuf::from("/var/log/mail.log")]);
        assert_eq!(c.max_line_bytes, 64 * 1024);
    }

    #[test]
    fn example_config_is_the_defaults() {
        let text = include_str!("../config.example.toml");
        let c = Config::from_toml(text, Origin::File("config.example.toml".into())).unwrap();
        assert_eq!(
            c.raw,
            RawConfig::default(),
            "config.example.toml must state the defaults"
        );
    }

    #[test]
    fn effective_settings_round_trip() {
        let c = Config::from_toml("[output]\ncsv = \"/tmp/x.csv\"\n", Origin::BuiltIn).unwrap();
        let again = Config::from_toml(&c.to_toml(), Origin::BuiltIn).unwrap();
        assert_eq!(c.raw, again.raw);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = err("[sources]\nfiles = [\"/a\"]\nstatedir = \"/x\"\n");
        assert!(e.contains("t.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("statedir"), "{e}");
        let e = err("[source]\n");
        assert!(e.contains("line 1") && e.contains("source"), "{e}");
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let e = err("[sources]\n\nfiles = []\n");
        assert!(e.contains("line 3") && e.contains("at least one"), "{e}");
        let e = err("[sources]\nmax_line_bytes = 10\n");
        assert!(
            e.contains("line 2") && e.contains("max_line_bytes") && e.contains("out of range"),
            "{e}"
        );
        let e = err("[sources]\nmax_line_bytes = \"64k\"\n");
        assert!(e.contains("line 2"), "{e}");
        let e = err("[output]\ncsv = 3\n");
        assert!(e.contains("line 2") && e.contains("csv"), "{e}");
    }

    #[test]
    fn durations_need_a_unit_and_name_the_line() {
        let c =
            Config::from_toml("[daemon]\nshutdown_timeout = \"2s\"\n", Origin::BuiltIn).unwrap();
        assert_eq!(c.shutdown_timeout, Duration::from_secs(2));
        let c =
            Config::from_toml("[sources]\npoll_interval = \"250ms\"\n", Origin::BuiltIn).unwrap();
        assert_eq!(c.poll_interval, Duration::from_millis(250));
        let e = err("[daemon]\n\nshutdown_timeout = 10\n");
        assert!(
            e.contains("line 3") && e.contains("shutdown_timeout"),
            "{e}"
        );
        let e = err("[daemon]\nshutdown_timeout = \"10\"\n");
        assert!(e.contains("line 2") && e.contains("with a unit"), "{e}");
        let e = err("[sources]\n\npoll_interval = \"0s\"\n");
        assert!(
            e.contains("sources.poll_interval") && e.contains("line 3"),
            "{e}"
        );
    }

    #[test]
    fn changes_list_what_differs() {
        let a = Config::from_toml("", Origin::BuiltIn).unwrap();
        let b = Config::from_toml(
            "[sources]\nfiles = [\"/a\", \"/b\"]\n[daemon]\nstats_interval = \"1m\"\n",
            Origin::BuiltIn,
        )
        .unwrap();
        assert_eq!(
            a.changes(&b),
            vec![
                "daemon.stats_interval: \"15m\" -> \"1m\"".to_string(),
                "sources.files: [\"/var/log/mail.log\"] -> [\"/a\", \"/b\"]".to_string(),
            ]
        );
        assert!(a.changes(&a).is_empty());
    }

    #[test]
    fn a_password_in_a_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[report]\nto = [\"a@example.org\"]\n\n[report.smtp]\nusername = \"u\"\npassword = \"s3cret\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Config::load(Some(&p)).unwrap_err().to_string();
        assert!(
            e.contains("report.smtp.password") && e.contains("line 6") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert!(
            c.to_toml().contains("password = \"(hidden)\""),
            "check never prints the password"
        );
        // A password file instead, and a username without any password.
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "from-file\n").unwrap();
        std::fs::write(&p, format!("[report]\nto = [\"a@example.org\"]\n[report.smtp]\nusername = \"u\"\npassword_file = \"{}\"\n", pw.display())).unwrap();
        let c = Config::load(Some(&p)).unwrap();
        let Some(crate::report::mail::MailSettings {
            transport: crate::report::mail::Transport::Smtp { credentials, .. },
            ..
        }) = c.report_mail
        else {
            panic!("smtp settings")
        };
        assert_eq!(credentials, Some(("u".into(), "from-file".into())));
        std::fs::write(
            &p,
            "[report]\nto = [\"a@example.org\"]\n[report.smtp]\nusername = \"u\"\n",
        )
        .unwrap();
        assert!(
            Config::load(Some(&p))
                .unwrap_err()
                .to_string()
                .contains("neither password_file nor password")
        );
        let e = err("[report]\nto = [\"not an address\"]\n");
        assert!(
            e.contains("line 2") && e.contains("not a mail address"),
            "{e}"
        );
        let e = err("[report]\nschedule = \"every day\"\n");
        assert!(
            e.contains("line 2") && e.contains("cron with seconds"),
            "{e}"
        );
    }

    #[test]
    fn missing_named_file_is_an_error_but_missing_default_is_not() {
        let e = Config::load(Some(Path::new("/nonexistent/maillogsentinel.toml"))).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/maillogsentinel.toml"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("config.toml");
        assert_eq!(
            Config::load_or_default(None, &absent).unwrap().origin,
            Origin::BuiltIn
        );
        std::fs::write(&absent, "[sources]\nbackfill = false\n").unwrap();
        let c = Config::load_or_default(None, &absent).unwrap();
        assert_eq!(c.origin, Origin::File(absent.clone()));
    }
}
