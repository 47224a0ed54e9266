//! The command line: what each subcommand takes. Parsing is clap's; running is `main.rs`'s.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Catches brute-force mail logins in Postfix and Dovecot logs, reports them, bans them.
///
/// `maillogsentinel run` is the daemon (the systemd unit maillogsentinel.service). It follows
/// the mail log (files across rotation, or the journal), records every failed SASL, IMAP and
/// POP3 login with the attacker's address, reverse DNS (forward-confirmed), country and AS in
/// the store (a CSV by default, SQLite or PostgreSQL), mails reports and alerts, and with
/// [response] bans attackers in nftables. The other commands ask it (status, reload, bans),
/// read the store (report), or work beside it (scan, import, check).
#[derive(Debug, Parser)]
#[command(
    name = "maillogsentinel",
    version,
    about,
    long_about,
    propagate_version = true,
    after_long_help = AFTER_HELP
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where things are, and how the daemon is driven: the end of `--help` and of the man page.
const AFTER_HELP: &str = "\
Files:
  /etc/maillogsentinel/config.toml    the configuration (-c another); `check` validates it
  /var/lib/maillogsentinel/           the state directory: records, checkpoints, GeoIP databases
  /run/maillogsentinel/control.sock   the control socket (status, reload, bans)

Signals (to the daemon):
  SIGHUP   reload the configuration (as `maillogsentinel reload`)
  SIGUSR1  send the report now
  SIGTERM  drain what was read, record it, and stop

Its log: journalctl -u maillogsentinel (warnings and worse: -p warning).
Documentation: /usr/share/doc/maillogsentinel/ (operations.md, use-cases.md).";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: follow the configured logs and record every failed SASL login.
    Run(ConfigArg),
    /// Read log files once and record a row per failed SASL login (into the store, or a CSV).
    Scan(ScanArgs),
    /// Validate the configuration, look at the host (logs readable, state and records
    /// writable, GeoIP databases, DNS, SMTP, PostgreSQL, journal) and print the effective
    /// settings: exit 0 all good, 1 problems with the host, 2 invalid configuration.
    Check(CheckArgs),
    /// Ask the running daemon what it is doing (exit 0 running, 3 not running).
    Status(StatusArgs),
    /// Ask the running daemon to reload its configuration, and say how it went (exit 0
    /// applied, 1 refused: the running configuration is kept).
    Reload(ConfigArg),
    /// Summarise who attacked in a window of time: print it, or mail it.
    Report(ReportArgs),
    /// Show what enrichment knows about addresses: reverse DNS, country, AS.
    Lookup(LookupArgs),
    /// Manage the GeoIP databases.
    #[command(subcommand)]
    Geoip(GeoipCommand),
    /// Load history into the database store, once: this program's CSV, or the original
    /// MailLogSentinel's `;`-separated file.
    Import(ImportArgs),
    /// Delete one person's data on request (GDPR): every row of an address, a username or
    /// both, from the store and the state directory's records. The daemon must be stopped.
    Purge(PurgeArgs),
    /// Manage the database store's schema (`[output] store = "sqlite"`).
    #[command(subcommand)]
    Db(DbCommand),
    /// List the bans running ([response]): address or network, rule, time left, country, AS.
    Bans(StatusArgs),
    /// Ban an address or network by hand, through the running daemon.
    Ban(BanArgs),
    /// Lift a ban (or every ban) by hand, through the running daemon.
    Unban(UnbanArgs),
    /// Rewrite a Postfix/Dovecot log so it can be shared in a bug report: addresses, host
    /// names, usernames and mail addresses replaced consistently, every line's form kept (so
    /// `scan` finds the same events in it).
    Anonymize(AnonymizeArgs),
    /// Write the man pages or a shell's completions, generated from this definition (what
    /// the package build runs; like `rg --generate`).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// `anonymize`
#[derive(Debug, Args)]
pub struct AnonymizeArgs {
    /// The log to read: plain or gzip, `-` for standard input.
    #[arg(value_name = "IN")]
    pub input: PathBuf,
    /// Where to write it (`-` for standard output); an existing file is refused.
    #[arg(value_name = "OUT")]
    pub output: PathBuf,
}

/// `generate`
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// What to write.
    #[arg(value_enum)]
    pub what: Generated,
    /// Where: a directory for `man` (one page per command), a file for a completion
    /// (default: standard output).
    #[arg(value_name = "PATH")]
    pub out: Option<PathBuf>,
}

/// What `generate` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Generated {
    /// The man pages: maillogsentinel(1) and one per subcommand (maillogsentinel-scan(1), ...).
    Man,
    /// bash's completion script.
    CompleteBash,
    /// zsh's completion function.
    CompleteZsh,
    /// fish's completions.
    CompleteFish,
}

/// `ban`
#[derive(Debug, Args)]
pub struct BanArgs {
    #[command(flatten)]
    /// The configuration.
    pub config: ConfigArg,
    /// An address (`203.0.113.7`) or a network (`203.0.113.0/24`).
    #[arg(value_name = "IP")]
    pub target: String,
    /// How long (`30m`, `1h`, `7d`); default: the first rule's ban.
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
}

/// `unban`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["target", "all"])))]
pub struct UnbanArgs {
    #[command(flatten)]
    /// The configuration.
    pub config: ConfigArg,
    /// An address or network banned (a network lifts the bans inside it too).
    #[arg(value_name = "IP")]
    pub target: Option<String>,
    /// Lift every ban.
    #[arg(long)]
    pub all: bool,
}

/// `db ...`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Show the database, its schema version and the migrations applied and pending.
    Status(ConfigArg),
    /// Apply the pending schema migrations (the daemon also applies them when it starts).
    Migrate(MigrateArgs),
}

/// `import`
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    /// The configuration.
    pub config: ConfigArg,
    /// Files to import: this program's intrusion CSV, or the original MailLogSentinel's
    /// (`server;date;ip;user;hostname;reverse_dns_status;country_code;asn;aso`). Importing a
    /// file again adds only what it gained since.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// `check`
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    /// The configuration.
    pub config: ConfigArg,
    /// Look at the host as this user (the service's, `maillogsentinel`: what it can read and
    /// write); needs root. Default: the user running the command.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Also connect to the SMTP server and say EHLO (nothing is sent).
    #[arg(long)]
    pub smtp: bool,
    /// What the service runs before each start (ExecStartPre): print only the problems, as
    /// warnings in its log; fail (exit 2) only for an invalid configuration, since the daemon
    /// waits for a missing log and retries what it cannot write.
    #[arg(long, conflicts_with = "user")]
    pub pre_start: bool,
}

/// `status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    /// The configuration (it says where the daemon's state directory, and so its socket, is).
    pub config: ConfigArg,
    /// Print JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `purge`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).multiple(true).args(["ip", "user"])))]
pub struct PurgeArgs {
    #[command(flatten)]
    /// The configuration.
    pub config: ConfigArg,
    /// Rows from this address (IPv4 or IPv6, in any spelling).
    #[arg(long, value_name = "IP")]
    pub ip: Option<std::net::IpAddr>,
    /// Rows for this username (ASCII letters compared without regard to case). With --ip,
    /// only rows of both.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Only rows before this time (2026-11-22, "2026-11-22 08:00", or RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub before: Option<String>,
}

/// `db migrate`
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    /// The configuration.
    pub config: ConfigArg,
    /// Stop at this schema version [default: the newest this program knows].
    #[arg(long, value_name = "VERSION")]
    pub to: Option<i64>,
}

/// `-c CONFIG`, shared by every subcommand that reads the configuration.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Configuration file [default: /etc/maillogsentinel/config.toml, or built-in defaults
    /// when that file does not exist]. A file named here (or in MAILLOGSENTINEL_CONFIG) must
    /// exist.
    #[arg(short, long, value_name = "CONFIG", env = "MAILLOGSENTINEL_CONFIG")]
    pub config: Option<PathBuf>,
}

/// `geoip ...`
#[derive(Debug, Subcommand)]
pub enum GeoipCommand {
    /// Download the configured databases, check them and replace the old ones atomically.
    Update(ConfigArg),
}

/// Output formats of `report --print`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned tables (colour on a terminal): the verdict and the overview first.
    Text,
    /// The HTML the mail carries, with the chart inline: one file that stands alone.
    Html,
    /// JSON, for scripts (docs/report-json.md).
    Json,
}

/// `report`
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    /// The configuration.
    pub config: ConfigArg,
    /// The window: the last DURATION until now (e.g. 24h, 7d) [default: since the last report
    /// sent, or 24h].
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["from", "to"])]
    pub since: Option<String>,
    /// Window start (2026-11-22, "2026-11-22 08:00", or RFC 3339).
    #[arg(long, value_name = "TIME", requires = "to")]
    pub from: Option<String>,
    /// Window end, excluded.
    #[arg(long, value_name = "TIME", requires = "from")]
    pub to: Option<String>,
    /// Print the report (the default unless --send is given).
    #[arg(long)]
    pub print: bool,
    /// Mail the report to `[report] to`; exit 1 if it cannot be sent (it then waits in the
    /// outbox, which the daemon retries).
    #[arg(long)]
    pub send: bool,
    /// Format of --print [default: text]. The mail always carries text, HTML and the chart.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Every table and every row in the text report (by default it fits a 50-line terminal:
    /// the verdict, the overview, who logged in after failing, the top addresses and
    /// usernames).
    #[arg(long)]
    pub full: bool,
    /// Print straight to the terminal, not through a pager ($PAGER, else `less`, used when
    /// stdout is a terminal, as git does).
    #[arg(long)]
    pub no_pager: bool,
    /// Only this server's rows (the `server` column: the host name its log lines carry), for
    /// a database a fleet shares [default: every server's].
    #[arg(long, value_name = "NAME", value_parser = server_name)]
    pub server: Option<String>,
}

/// A server name as `--server` takes it: a host name (letters, digits, `.`, `-`, `_`).
fn server_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(s.to_string())
    } else {
        Err("a host name, as in the record's server column (letters, digits, '.', '-', '_')".into())
    }
}

/// `lookup`
#[derive(Debug, Args)]
pub struct LookupArgs {
    #[command(flatten)]
    /// The configuration.
    pub config: ConfigArg,
    /// Addresses to look up (IPv4 or IPv6).
    #[arg(value_name = "IP", required = true)]
    pub ips: Vec<std::net::IpAddr>,
}

/// `scan`
#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    /// The configuration.
    pub config: ConfigArg,
    /// Leave the enrichment columns (reverse DNS, country, ASN) empty.
    #[arg(long)]
    pub no_enrich: bool,
    /// Write rows to this CSV (appended; `-` for stdout with a header) instead of the
    /// configured store. Without it, rows go into the store with the positions read, so that
    /// the daemon (which must be stopped meanwhile) reads on after them.
    #[arg(short, long, value_name = "OUT.csv")]
    pub output: Option<PathBuf>,
    /// With --output: write successful logins to this CSV (appended; `-` for stdout with a
    /// header, when the failures do not go there). Without --output, logins go into the store
    /// when `[output] logins` keeps them; with --output alone, nowhere.
    #[arg(long, value_name = "LOGINS.csv")]
    pub logins: Option<PathBuf>,
    /// Read the systemd journal (or `[sources] journal_path`) instead of files: the entries
    /// `journal_match` selects (facility mail by default), all that is retained unless
    /// --since or --from/--to narrow it.
    #[arg(long, conflicts_with = "files")]
    pub journal: bool,
    /// With --journal: the last DURATION until now (e.g. 24h, 7d).
    #[arg(long, value_name = "DURATION", requires = "journal", conflicts_with_all = ["from", "to"])]
    pub since: Option<String>,
    /// With --journal: window start (2026-11-22, "2026-11-22 08:00", or RFC 3339).
    #[arg(long, value_name = "TIME", requires = "journal")]
    pub from: Option<String>,
    /// With --journal: window end, excluded.
    #[arg(long, value_name = "TIME", requires = "journal")]
    pub to: Option<String>,
    /// Log files to read, in this order: plain text, gzip (detected by content), or `-` for
    /// stdin.
    #[arg(value_name = "FILE", required_unless_present = "journal")]
    pub files: Vec<PathBuf>,
}
