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

/// Where the configuration is read from when `-c` is not given.
pub const DEFAULT_PATH: &str = "/etc/maillogsentinel/config.toml";

mod raw;
mod validate;

pub use raw::*;
use validate::{line_of, validate};

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
    /// The server name for lines without a host field (`[sources] server`, else the hostname).
    pub server: String,
    /// The intrusion CSV.
    pub csv: PathBuf,
    /// The logins CSV (`None`: `[output] logins = ""`, no record of successful logins).
    /// With a database store, whether logins are kept (in its `logins` table).
    pub logins: Option<PathBuf>,
    /// Which store keeps the records.
    pub store: crate::store::StoreKind,
    /// The SQLite database (used when `store` is `sqlite`).
    pub sqlite: PathBuf,
    /// Rows older than this are deleted from a database store (`None`: kept for ever).
    pub retention: Option<Duration>,
    /// The PostgreSQL database (when `[output] postgres` is set).
    pub postgres: Option<crate::store::postgres::PgSettings>,
    /// Read rotated history on the first start.
    pub backfill: Backfill,
    /// The systemd journal: whether, which entries, where.
    pub journal: crate::source::journal::JournalSettings,
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
    /// Compromise alerts.
    pub alerts: crate::alerts::AlertSettings,
    /// Where Prometheus metrics are served (`None`: nowhere).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Banning attackers.
    pub response: crate::respond::ResponseSettings,
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
            report_mail(&raw.report, &origin, text, &raw.sources.state_dir).map_err(|message| {
                ConfigError::Invalid {
                    path: path.clone(),
                    message,
                }
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
            server: raw.sources.server.clone().unwrap_or_else(local_hostname),
            csv: raw.output.csv.clone(),
            logins: raw.output.logins_path(),
            store: raw.output.store,
            sqlite: raw.output.sqlite_path(),
            retention: raw.output.retention.map(|d| d.0),
            postgres: raw
                .output
                .postgres
                .clone()
                .map(|url| crate::store::postgres::PgSettings {
                    url,
                    password_file: raw.output.password_file.clone(),
                    instance: raw.output.instance.clone().unwrap_or_else(local_hostname),
                }),
            backfill: raw.sources.backfill,
            journal: journal_settings(&raw.sources),
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
            alerts: crate::alerts::AlertSettings {
                window: raw.alerts.window.0,
                username_addresses: raw.alerts.username_addresses,
                typo_failures: raw.alerts.typo_failures,
                mail: raw.alerts.mail.unwrap_or(!raw.report.to.is_empty()),
                mail_delay: raw.alerts.mail_delay.0,
            },
            metrics_listen: raw.metrics.listen.parse().ok(),
            response: crate::respond::ResponseSettings::from_raw(&raw.response),
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

/// The journal settings in `[sources]` (match terms were validated when the file was read;
/// none means facility mail).
/// This machine's hostname, the default `[sources] server` (`localhost` if the kernel has
/// none, which Linux never does).
fn local_hostname() -> String {
    hostname::get()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn journal_settings(raw: &RawSources) -> crate::source::journal::JournalSettings {
    use crate::source::journal::{DEFAULT_MATCH, JournalSettings, JournalUse, Match};
    let terms: Vec<&str> = if raw.journal_match.is_empty() {
        vec![DEFAULT_MATCH]
    } else {
        raw.journal_match.iter().map(String::as_str).collect()
    };
    JournalSettings {
        mode: match raw.journal {
            JournalMode::Auto => JournalUse::Auto,
            JournalMode::Always => JournalUse::Always,
            JournalMode::Never => JournalUse::Never,
        },
        matches: terms
            .into_iter()
            .map(|t| Match::parse(t).expect("validated while reading"))
            .collect(),
        path: raw.journal_path.clone(),
    }
}

/// Why a password in the configuration file `path` is exposed, with what to do; `None` when
/// only its owner and the service's group can read it. The package installs the file
/// `root:maillogsentinel 0640` (the service reads it through its group), so a group that can
/// read it is fine when it is the service's: the state directory's group (systemd's
/// `StateDirectory=` gives it to the service), the primary group of the user checking, or
/// root's.
fn password_exposed(path: &std::path::Path, state_dir: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.mode() & 0o777;
    let advice = "or move the password to password_file (a file of its own, mode 0600 or 0640 with the service's group)";
    if mode & 0o007 != 0 {
        return Some(format!(
            "others (every user) can read it (mode {mode:04o}): chmod o-rwx {} {advice}",
            path.display()
        ));
    }
    if mode & 0o070 != 0 {
        let gid = meta.gid();
        let service_group = std::fs::metadata(state_dir).ok().map(|m| m.gid());
        let ours = gid == 0 || Some(gid) == service_group || own_groups().contains(&gid);
        if !ours {
            return Some(format!(
                "its group (gid {gid}) can read it (mode {mode:04o}) and is not the service's: chgrp maillogsentinel {} (the service's group), or chmod g-rwx, {advice}",
                path.display()
            ));
        }
    }
    None
}

/// The primary group of this process (real and effective), from `/proc/self/status`. Not its
/// supplementary groups: the service is in `adm` to read logs, and everyone in `adm` must not
/// read the SMTP password.
fn own_groups() -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    status
        .lines()
        .filter_map(|l| l.strip_prefix("Gid:"))
        .flat_map(|v| {
            v.split_whitespace()
                .take(2)
                .filter_map(|g| g.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Mail settings from `[report]`, checking the password rules.
fn report_mail(
    raw: &RawReport,
    origin: &Origin,
    text: &str,
    state_dir: &std::path::Path,
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
                if let Origin::File(p) = origin
                    && let Some(why) = password_exposed(p, state_dir)
                {
                    return Err(format!(
                        "report.smtp.password (line {}) is in {}: {why}",
                        line_of(text, "report.smtp.password"),
                        p.display()
                    ));
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
            (format!("{d}/mail.log.1.csv"), "would be read as a rotation"),
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
                "[sources]\nfiles = [\"{d}/mail.log\", \"{d}/mail.logger\", \"{d}/mail.log-other\", \"{d}/mail.err\"]\n"
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
        let text = include_str!("../../config.example.toml");
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
    fn server_defaults_to_the_hostname_and_must_be_one_word() {
        let c = Config::from_toml("", Origin::BuiltIn).unwrap();
        let host = hostname::get().unwrap().to_string_lossy().into_owned();
        assert_eq!(c.server, host);
        let c = Config::from_toml("[sources]\nserver = \"mx1.example.org\"\n", Origin::BuiltIn)
            .unwrap();
        assert_eq!(c.server, "mx1.example.org");
        for bad in ["\"\"", "\"mx 1\"", "\"mx\\n\""] {
            let e = err(&format!("[sources]\n\nserver = {bad}\n"));
            assert!(
                e.contains("line 3") && e.contains("server") && e.contains("one word"),
                "{e}"
            );
        }
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
            e.contains("report.smtp.password")
                && e.contains("line 6")
                && e.contains("others (every user) can read it (mode 0644)")
                && e.contains("chmod o-rwx")
                && e.contains("password_file"),
            "{e}"
        );
        // Group-readable by this user's own group: what the package does (root:maillogsentinel
        // 0640, the service in that group), so accepted.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        Config::load(Some(&p)).unwrap();
        // A group that is neither: refused, saying which group to give it.
        if std::os::unix::fs::chown(&p, None, Some(4242)).is_ok() && !own_groups().contains(&4242) {
            let e = Config::load(Some(&p)).unwrap_err().to_string();
            assert!(
                e.contains("gid 4242") && e.contains("chgrp maillogsentinel"),
                "{e}"
            );
        } else {
            eprintln!("SKIPPED the foreign-group case: giving a file another group needs root");
        }
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
