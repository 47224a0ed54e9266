//! Checks of values that parse but cannot work, all listed at once with their keys and lines:
//! intervals too short to work or too long for the clock, sizes out of range, empty paths, and
//! files that would be read twice or written over (a log listed twice, through a symlink or
//! beside its own rotation; an output that is a log, named like one's rotation, or a state
//! file).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::RawConfig;

/// Every problem with values that parse but cannot work, each naming its key and line: a
/// zero or absurdly small interval (it would spin or flood the log), one too large for the
/// clock, a log listed twice (also through a symlink) or beside its own rotation, an output
/// that is a log or a state file.
pub(super) fn validate(raw: &RawConfig, text: &str) -> Vec<String> {
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
            "alerts.mail_delay",
            raw.alerts.mail_delay.0,
            Duration::from_secs(1),
            false,
        ),
        (
            "alerts.window",
            raw.alerts.window.0,
            Duration::from_secs(60),
            false,
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
    if !(2..=1000).contains(&raw.alerts.username_addresses) {
        problem(
            "alerts.username_addresses",
            format!(
                "{} is out of range (2 to 1000 addresses)",
                raw.alerts.username_addresses
            ),
        );
    }
    if raw.alerts.typo_failures == 0 {
        problem(
            "alerts.typo_failures",
            "must be at least 1 (1: every failure before a login counts)".into(),
        );
    }
    if raw.alerts.mail == Some(true) && raw.report.to.is_empty() {
        problem(
            "alerts.mail",
            "is true but [report] to names no recipient: add one, or set mail = false".into(),
        );
    }
    response(raw, &mut problem);
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
    if raw.output.store == crate::store::StoreKind::Sqlite {
        let db = raw.output.sqlite_path();
        if db.as_os_str().is_empty() {
            problem(
                "output.sqlite",
                "is empty: name a database file (default events.db beside output.csv)".into(),
            );
        } else if let Some((key, _)) = outputs(raw).find(|(_, p)| same_file(p, &db)) {
            problem(
                "output.sqlite",
                format!("is {key}: the database needs a file of its own"),
            );
        }
    }
    if let Some(keep) = raw.output.retention {
        if raw.output.store == crate::store::StoreKind::Csv {
            problem(
                "output.retention",
                "is not done by the CSV store (its files are only ever appended: archive them with mv); set store = \"sqlite\" or \"postgres\" to delete old rows, or remove retention".into(),
            );
        } else if keep.0 < std::time::Duration::from_secs(86_400) {
            problem(
                "output.retention",
                "is shorter than a day: reports and the alerts' memory read the last day at least; write e.g. \"180d\"".into(),
            );
        }
    }
    if raw.output.store == crate::store::StoreKind::Postgres {
        match &raw.output.postgres {
            None => problem(
                "output.postgres",
                "is not set: store = \"postgres\" needs the database, e.g. postgres://maillogsentinel@db.example.org/maillogsentinel".into(),
            ),
            Some(url) => {
                if let Err(why) = crate::store::postgres::check_url(url) {
                    problem("output.postgres", why);
                }
            }
        }
        if raw.output.instance.as_deref() == Some("") {
            problem(
                "output.instance",
                "is empty: name this daemon (default: the hostname)".into(),
            );
        }
        if let Some(file) = &raw.output.password_file
            && !file.is_file()
        {
            problem(
                "output.password_file",
                format!(
                    "{} is not a file: create it (mode 0600) with the password on its first line",
                    file.display()
                ),
            );
        }
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
                        "{} would be read twice: as a log of its own, and as a rotation of {} (a name that is a listed log's name, then . or - and a digit, is read as part of its history); list only {}",
                        rotated.display(),
                        log.display(),
                        log.display()
                    ),
                );
            }
        }
        for (key, out) in outputs(raw) {
            if same_file(a, &out) {
                problem(
                    key,
                    format!("is the log {}: name another file", a.display()),
                );
            } else if rotation_of(a, &out).is_some() {
                problem(
                    key,
                    format!(
                        "would be read as a rotation of the log {} (its name is the log's, then . or - and a digit): name another file",
                        a.display()
                    ),
                );
            }
        }
    }
    let state_files = ["checkpoint.json", "lock", "report-state.json"];
    for (key, out) in outputs(raw) {
        for name in state_files {
            if same_file(&out, &raw.sources.state_dir.join(name)) {
                problem(
                    key,
                    format!("is the state file {name} in sources.state_dir: name another file"),
                );
            }
        }
    }
    if let Some(logins) = raw.output.logins_path()
        && same_file(&raw.output.csv, &logins)
    {
        problem(
            "output.logins",
            "is output.csv: successful logins need a file of their own (or \"\" to keep none)"
                .into(),
        );
    }
    problems
}

/// The records written, with their keys: the intrusion CSV, and the logins CSV when kept.
fn outputs(raw: &RawConfig) -> impl Iterator<Item = (&'static str, PathBuf)> {
    [
        ("output.csv", Some(raw.output.csv.clone())),
        ("output.logins", raw.output.logins_path()),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.filter(|p| !p.as_os_str().is_empty()).map(|p| (k, p)))
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
/// `mail.log-20261122.gz` beside `mail.log`; the same rule as the sibling search).
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
            && on.starts_with(ln)
            && std::str::from_utf8(&on[ln.len()..])
                .is_ok_and(crate::source::rotated::is_rotation_suffix)
    };
    if is_rotation(a, b) {
        Some((a, b))
    } else if is_rotation(b, a) {
        Some((b, a))
    } else {
        None
    }
}

/// The line (1-based) where `section.key` is set, or 0 when it is not in the text.
pub(super) fn line_of(text: &str, dotted: &str) -> usize {
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

/// `[response]`: values that parse but cannot work.
fn response(raw: &RawConfig, problem: &mut dyn FnMut(&str, String)) {
    const YEAR: Duration = Duration::from_secs(366 * 24 * 3600);
    let r = &raw.response;
    if !(32..=128).contains(&r.ipv6_prefix) {
        problem(
            "response.ipv6_prefix",
            format!(
                "{} is out of range (32 to 128; 64 bans the /64 a host usually has)",
                r.ipv6_prefix
            ),
        );
    }
    if r.max_ban.0 < Duration::from_secs(1) || r.max_ban.0 > YEAR {
        problem("response.max_ban", "must be between 1s and a year".into());
    }
    if r.max_bans == 0 || r.max_bans > 10_000_000 {
        problem(
            "response.max_bans",
            format!("{} is out of range (1 to 10,000,000 bans)", r.max_bans),
        );
    }
    if r.nftables && r.ports.is_empty() {
        problem(
            "response.ports",
            "is empty: list the ports banned addresses may not reach (the default is the mail ports), or set nftables = false".into(),
        );
    }
    if r.ports.contains(&0) {
        problem("response.ports", "0 is not a port".into());
    }
    if let Some(p) = r.exec.first()
        && !std::path::Path::new(p).is_absolute()
    {
        problem(
            "response.exec",
            format!("the program {p:?} must be an absolute path (no PATH lookup, no shell)"),
        );
    }
    if r.exec_timeout.0 < Duration::from_millis(100) || r.exec_timeout.0 > Duration::from_secs(600)
    {
        problem(
            "response.exec_timeout",
            "must be between 100ms and 10m".into(),
        );
    }
    if r.enabled && r.mode == crate::respond::Mode::Ban && !r.nftables && r.exec.is_empty() {
        problem(
            "response.nftables",
            "is false and no exec command is set: nothing would carry a ban out (set nftables = true, an exec command, or mode = \"log\")".into(),
        );
    }
    if r.share && raw.output.store != crate::store::StoreKind::Postgres {
        problem(
            "response.share",
            "shares bans through PostgreSQL: set [output] store = \"postgres\" (and postgres = ...), or share = false".into(),
        );
    }
    if r.enabled && r.rule.is_empty() {
        problem(
            "response.rule",
            "no [[response.rule]]: add one, e.g. name = \"per-address\", key = \"ip\", max = 5, window = \"10m\", ban = \"1h\"".into(),
        );
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, rule) in r.rule.iter().enumerate() {
        let key = format!("response.rule[{}] ({:?})", i + 1, rule.name);
        let word = !rule.name.is_empty()
            && rule.name != "manual"
            && rule
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !word {
            problem(
                &key,
                "name must be a word of letters, digits, '-' and '_' (and not \"manual\", which `maillogsentinel ban` uses)".into(),
            );
        }
        if !names.insert(rule.name.clone()) {
            problem(&key, "another rule has this name".into());
        }
        let most = if rule.key == crate::respond::KeyKind::Username {
            // A username keeps this many addresses: one more could never be counted.
            crate::respond::rules::MAX_ADDRESSES_PER_USERNAME as u32 - 1
        } else {
            1_000_000
        };
        if rule.max == 0 || rule.max > most {
            problem(
                &key,
                format!("max = {} is out of range (1 to {most})", rule.max),
            );
        }
        if rule.window.0 < Duration::from_secs(1) || rule.window.0 > YEAR {
            problem(&key, "window must be between 1s and a year".into());
        }
        if rule.ban.0 < Duration::from_secs(1) {
            problem(&key, "ban must be at least 1s".into());
        } else if rule.ban.0 > r.max_ban.0 {
            problem(
                &key,
                format!(
                    "ban ({}) is longer than [response] max_ban ({}): raise max_ban or shorten the ban",
                    humantime::format_duration(rule.ban.0),
                    humantime::format_duration(r.max_ban.0)
                ),
            );
        }
    }
}
