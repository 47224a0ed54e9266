//! The `maillogsentinel` binary: parses the command line, sets up logging, runs a subcommand
//! and turns the outcome into an exit code (0 success, 1 something could not be read or
//! written, 2 usage or configuration error).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser as _;
use maillogsentinel::cli::{
    AnonymizeArgs, CheckArgs, Cli, Command, ConfigArg, DbCommand, Format, GenerateArgs, Generated,
    GeoipCommand, ImportArgs, LookupArgs, MigrateArgs, PurgeArgs, ReportArgs, ScanArgs, StatusArgs,
};
use maillogsentinel::config::Config;
use maillogsentinel::daemon;
use maillogsentinel::daemon::logging;
use maillogsentinel::enrich::Enricher;
use maillogsentinel::scan;
use maillogsentinel::sink::CsvSink;
use tracing::Level;

/// How a command failed, which decides the exit code.
enum Failure {
    /// Bad usage or configuration: exit 2.
    Usage(anyhow::Error),
    /// Something could not be read or written: exit 1.
    Runtime(anyhow::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(matches!(cli.command, Command::Run(_)));
    let outcome = match cli.command {
        Command::Run(args) => run_daemon(args),
        Command::Scan(args) => run_scan(args),
        Command::Check(args) => run_check(args),
        Command::Status(args) => run_status(args),
        Command::Reload(args) => run_reload(args),
        Command::Lookup(args) => run_lookup(args),
        Command::Report(args) => run_report(args),
        Command::Geoip(GeoipCommand::Update(args)) => run_geoip_update(args),
        Command::Import(args) => run_import(args),
        Command::Purge(args) => run_purge(args),
        Command::Db(DbCommand::Status(args)) => run_db_status(args),
        Command::Db(DbCommand::Migrate(args)) => run_db_migrate(args),
        Command::Bans(args) => run_bans(args),
        Command::Ban(args) => {
            let word = format!(
                "ban {}{}",
                args.target,
                args.duration
                    .map(|d| format!(" {}", d.as_secs().max(1)))
                    .unwrap_or_default()
            );
            run_respond(&args.config, &args.target, &word)
        }
        Command::Unban(args) => {
            let target = args.target.clone().unwrap_or_else(|| "--all".into());
            run_respond(&args.config, &target, &format!("unban {target}"))
        }
        Command::Generate(args) => run_generate(args),
        Command::Anonymize(args) => run_anonymize(args),
    };
    match outcome {
        Ok(code) => code,
        Err(Failure::Usage(e)) => {
            logging::tell(Level::ERROR, &describe(&e));
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            logging::tell(Level::ERROR, &describe(&e));
            ExitCode::from(1)
        }
    }
}

/// The one-thread tokio runtime every command that needs one runs on (blocking work goes to
/// threads of its own).
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("maillogsentinel")
        .build()
        .context("cannot start the runtime")
        .map_err(Failure::Runtime)
}

fn load_config(arg: &ConfigArg) -> Result<Config, Failure> {
    Config::load(arg.config.as_deref()).map_err(|e| Failure::Usage(e.into()))
}

/// Root writing into a state directory that belongs to the service user would leave files the
/// daemon cannot read (a checkpoint, a record, a lock owned by root): the command is run again
/// as the directory's owner instead, with that user's groups (`setpriv`, util-linux), so that
/// what it writes is the service's. `None`: go on here (not root, or root owns the directory,
/// or it does not exist yet).
fn as_state_owner(state_dir: &Path) -> Option<Result<ExitCode, Failure>> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self").ok()?.uid();
    let dir = std::fs::metadata(state_dir).ok()?;
    if me != 0 || dir.uid() == 0 {
        return None;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            return Some(Err(Failure::Runtime(anyhow::anyhow!(
                "cannot find this program's own path: {e}"
            ))));
        }
    };
    let (uid, gid) = (dir.uid(), dir.gid());
    logging::tell(
        Level::INFO,
        &format!(
            "running as the owner of {} (uid {uid}), so that what is written stays the service's",
            state_dir.display()
        ),
    );
    let status = std::process::Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--init-groups")
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .status();
    Some(match status {
        Ok(s) => Ok(ExitCode::from(s.code().unwrap_or(1).clamp(0, 255) as u8)),
        Err(e) => Err(Failure::Runtime(anyhow::anyhow!(
            "cannot run `setpriv` to act as the owner of {} (util-linux): {e}; run the command as that user (sudo -u maillogsentinel ...)",
            state_dir.display()
        ))),
    })
}

/// `status`: exit 0 and the daemon's answer when it runs, 3 when it does not (as LSB init
/// scripts say), 4 when it cannot be asked.
fn run_status(args: StatusArgs) -> Result<ExitCode, Failure> {
    use maillogsentinel::daemon::control::{self, Answer, ClientError};
    let config = load_config(&args.config)?;
    match control::request(
        &config.state_dir,
        "status",
        std::time::Duration::from_secs(10),
    ) {
        Ok(Answer::Status(s)) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&s).expect("a status always serialises")
                );
            } else {
                print!("{}", control::render_status(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(Answer::Error { message }) => {
            logging::tell(
                Level::ERROR,
                &format!("the daemon could not answer: {message}"),
            );
            Ok(ExitCode::from(4))
        }
        Ok(other) => {
            logging::tell(Level::ERROR, &format!("unexpected answer: {other:?}"));
            Ok(ExitCode::from(4))
        }
        Err(e @ ClientError::NotRunning(_)) => {
            println!("{e}");
            Ok(ExitCode::from(3))
        }
        Err(e) => {
            logging::tell(Level::ERROR, &e.to_string());
            Ok(ExitCode::from(4))
        }
    }
}

/// `bans`: the running daemon's list, or the record's when it is not running.
fn run_bans(args: StatusArgs) -> Result<ExitCode, Failure> {
    use maillogsentinel::daemon::control::{self, Answer, ClientError};
    let config = load_config(&args.config)?;
    let now = chrono::Utc::now().timestamp();
    let (list, from_record) = match control::request(
        &config.state_dir,
        "bans",
        std::time::Duration::from_secs(35),
    ) {
        Ok(Answer::Bans { bans }) => (bans, false),
        Ok(Answer::Error { message }) => {
            logging::tell(
                Level::ERROR,
                &format!("the daemon could not answer: {message}"),
            );
            return Ok(ExitCode::from(4));
        }
        Ok(other) => {
            logging::tell(Level::ERROR, &format!("unexpected answer: {other:?}"));
            return Ok(ExitCode::from(4));
        }
        Err(ClientError::NotRunning(_)) => {
            let record = maillogsentinel::respond::record::Record::new(&config.state_dir);
            let (rows, _) = record.read().map_err(|e| Failure::Runtime(e.into()))?;
            let mut book = maillogsentinel::respond::record::Book::default();
            for r in &rows {
                book.apply(r, now);
            }
            (maillogsentinel::respond::responder::views(&book, now), true)
        }
        Err(e) => {
            logging::tell(Level::ERROR, &e.to_string());
            return Ok(ExitCode::from(4));
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).expect("bans always serialise")
        );
    } else {
        if from_record {
            println!(
                "(maillogsentinel is not running: these are the bans its record says still run)"
            );
        }
        print!("{}", maillogsentinel::respond::responder::render(&list));
    }
    Ok(ExitCode::SUCCESS)
}

/// `ban` and `unban`: asks the running daemon; exit 0 done, 1 refused, 3 not running.
fn run_respond(config: &ConfigArg, target: &str, word: &str) -> Result<ExitCode, Failure> {
    use maillogsentinel::daemon::control::{self, Answer, ClientError};
    let config = load_config(config)?;
    if target != "--all" && maillogsentinel::respond::parse_net(target).is_none() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "{target:?} is neither an address nor a network: write e.g. 203.0.113.7 or 203.0.113.0/24"
        )));
    }
    match control::request(
        &config.state_dir,
        word,
        control::RESPOND_TIMEOUT + std::time::Duration::from_secs(5),
    ) {
        Ok(Answer::Done { message }) => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Answer::Error { message }) => {
            logging::tell(Level::ERROR, &message);
            Ok(ExitCode::from(1))
        }
        Ok(other) => {
            logging::tell(Level::ERROR, &format!("unexpected answer: {other:?}"));
            Ok(ExitCode::from(4))
        }
        Err(e @ ClientError::NotRunning(_)) => {
            logging::tell(
                Level::ERROR,
                &format!("{e}: bans are made and lifted by the daemon; start it first"),
            );
            Ok(ExitCode::from(3))
        }
        Err(e) => {
            logging::tell(Level::ERROR, &e.to_string());
            Ok(ExitCode::from(4))
        }
    }
}

/// `reload`: the daemon's answer, each change or each problem; exit 0 applied, 1 refused or
/// failed (the unit's `ExecReload`, so that `systemctl reload` fails visibly), 3 not running.
fn run_reload(args: ConfigArg) -> Result<ExitCode, Failure> {
    use maillogsentinel::daemon::control::{self, Answer, ClientError};
    // The file the daemon would read: when it is wrong, the daemon would refuse it too, and
    // where its socket is cannot be known from it anyway.
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            logging::tell(Level::ERROR, &e.to_string());
            logging::tell(
                Level::ERROR,
                "the running configuration is kept (the daemon was not asked to reload); fix the above and reload again",
            );
            return Ok(ExitCode::from(1));
        }
    };
    let timeout = control::RELOAD_TIMEOUT + std::time::Duration::from_secs(10);
    match control::request(&config.state_dir, "reload", timeout) {
        Ok(Answer::Reload(r)) => {
            for n in &r.notes {
                println!("note: {n}");
            }
            if r.ok {
                if r.changes.is_empty() {
                    println!("configuration reloaded: nothing changed");
                }
                for c in &r.changes {
                    println!("configuration reloaded: {c}");
                }
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &r.problems {
                    logging::tell(Level::ERROR, p);
                }
                logging::tell(
                    Level::ERROR,
                    "the running configuration is kept; fix the above and reload again",
                );
                Ok(ExitCode::from(1))
            }
        }
        Ok(Answer::Error { message }) => {
            logging::tell(
                Level::ERROR,
                &format!("the daemon could not answer: {message}"),
            );
            Ok(ExitCode::from(1))
        }
        Ok(other) => {
            logging::tell(Level::ERROR, &format!("unexpected answer: {other:?}"));
            Ok(ExitCode::from(1))
        }
        Err(e @ ClientError::NotRunning(_)) => {
            logging::tell(Level::ERROR, &e.to_string());
            Ok(ExitCode::from(3))
        }
        Err(e) => {
            logging::tell(Level::ERROR, &e.to_string());
            Ok(ExitCode::from(1))
        }
    }
}

/// `purge`: the rows of an address or username out of the store and the state directory's
/// records, with the daemon stopped (its state directory locked meanwhile).
fn run_purge(args: PurgeArgs) -> Result<ExitCode, Failure> {
    use maillogsentinel::store::{self, purge};
    let config = load_config(&args.config)?;
    let before = args
        .before
        .as_deref()
        .map(|t| {
            maillogsentinel::report::parse_time(t)
                .map_err(|e| Failure::Usage(anyhow::anyhow!("--before: {e}")))
        })
        .transpose()?;
    let who = purge::Purge {
        ip: args.ip,
        username: args.user.clone(),
        before,
    };
    if let Some(done) = as_state_owner(&config.state_dir) {
        return done;
    }
    let _lock = daemon::lock_state_dir(&config.state_dir).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "{e}: purge rewrites what the daemon writes; stop it first (systemctl stop maillogsentinel), purge, then start it again"
        ))
    })?;
    let mut store = store::open(&config).map_err(|e| Failure::Runtime(e.into()))?;
    let (failures, logins) = store.purge(&who).map_err(|e| Failure::Runtime(e.into()))?;
    drop(store);
    let state = purge::purge_state_files(&config.state_dir, &who)
        .map_err(|e| Failure::Runtime(e.into()))?;
    // (The username is shown quoted and escaped: it may be anyone's text.)
    println!("purged the rows of {}:", who.describe());
    println!(
        "  {failures} failed logins and {logins} logins from the {} store",
        config.store.as_str()
    );
    for (path, n) in &state {
        println!("  {n} rows from {}", path.display());
    }
    println!(
        "Not touched: copies made elsewhere (backups, archived or rotated records, reports already mailed, other hosts' state directories)."
    );
    Ok(ExitCode::SUCCESS)
}

fn run_import(args: ImportArgs) -> Result<ExitCode, Failure> {
    use maillogsentinel::store::{self, StoreKind, import};
    let config = load_config(&args.config)?;
    if config.store == StoreKind::Csv {
        return Err(Failure::Usage(anyhow::anyhow!(
            store::csv::IMPORT_NEEDS_A_DATABASE
        )));
    }
    // Root importing into the service's database would leave it root's (an events.db the
    // daemon could not open): run as the state directory's owner, as `scan` does.
    if let Some(outcome) = as_state_owner(&config.state_dir) {
        return outcome;
    }
    let mut store = store::open(&config).map_err(|e| Failure::Runtime(e.into()))?;
    let mut failed = 0;
    for path in &args.files {
        let mut warn = |msg: &str| logging::tell(Level::WARN, msg);
        match import::import_file(store.as_mut(), path, &mut warn) {
            Ok(done) => {
                let mut line = format!(
                    "{}: {} rows added ({})",
                    path.display(),
                    done.rows,
                    done.form
                );
                if done.bad > 0 {
                    line.push_str(&format!(
                        ", {} rows that could not be read skipped",
                        done.bad
                    ));
                }
                if done.already > 0 {
                    line.push_str(&format!(
                        "; its first {} bytes were imported before",
                        done.already
                    ));
                }
                println!("{line}");
            }
            Err(e @ import::ImportError::Store(_)) => {
                // Rows of this file may be staged: nothing more is imported with them.
                return Err(Failure::Runtime(e.into()));
            }
            Err(e) => {
                failed += 1;
                logging::tell(Level::ERROR, &e.to_string());
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The configured database, or a usage error saying the store has none.
enum Database {
    Sqlite(std::path::PathBuf),
    Postgres(maillogsentinel::store::postgres::PgSettings),
}

fn database(config: &Config) -> Result<Database, Failure> {
    use maillogsentinel::store::StoreKind;
    match (config.store, &config.postgres) {
        (StoreKind::Sqlite, _) => Ok(Database::Sqlite(config.sqlite.clone())),
        (StoreKind::Postgres, Some(pg)) => Ok(Database::Postgres(pg.clone())),
        (StoreKind::Postgres, None) => Err(Failure::Usage(anyhow::anyhow!(
            "[output] postgres is not set: name the database (postgres://USER@HOST/DATABASE)"
        ))),
        (StoreKind::Csv, _) => Err(Failure::Usage(anyhow::anyhow!(
            "[output] store is \"csv\": there is no database schema to manage (set store = \"sqlite\" or \"postgres\" to use one)"
        ))),
    }
}

fn run_db_status(args: ConfigArg) -> Result<ExitCode, Failure> {
    use maillogsentinel::store::{postgres, sqlite};
    let config = load_config(&args)?;
    let rt = |e: maillogsentinel::store::StoreError| Failure::Runtime(e.into());
    let (name, states, counts) = match database(&config)? {
        Database::Sqlite(path) => {
            if !path.exists() {
                println!(
                    "database: {} (not created yet: the daemon or `db migrate` creates it)",
                    path.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut conn = sqlite::connect(&path).map_err(rt)?;
            let states = sqlite::migration_states(&mut conn, &path).map_err(rt)?;
            let counts = sqlite::counts(&conn, &path).map_err(rt)?;
            (path.display().to_string(), states, counts)
        }
        Database::Postgres(pg) => {
            let mut client = postgres::connect(&pg).map_err(rt)?;
            let states = postgres::migration_states(&mut client, &pg).map_err(rt)?;
            let counts = postgres::counts(&mut client, &pg).map_err(rt)?;
            (
                format!("{} (instance {})", pg.describe(), pg.instance),
                states,
                counts,
            )
        }
    };
    let version = states
        .iter()
        .filter(|m| m.applied)
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    let pending = states.iter().filter(|m| !m.applied).count();
    println!("database: {name}");
    println!("schema version: {version} ({pending} migration(s) pending)");
    for m in &states {
        println!(
            "  V{} {} {}",
            m.version,
            m.name,
            if m.applied { "applied" } else { "pending" }
        );
    }
    for (table, n) in counts {
        println!("{table}: {n} rows");
    }
    Ok(ExitCode::SUCCESS)
}

fn run_db_migrate(args: MigrateArgs) -> Result<ExitCode, Failure> {
    use maillogsentinel::store::{postgres, sqlite};
    let config = load_config(&args.config)?;
    let rt = |e: maillogsentinel::store::StoreError| Failure::Runtime(e.into());
    let (name, applied) = match database(&config)? {
        Database::Sqlite(path) => {
            let mut conn = sqlite::connect(&path).map_err(rt)?;
            let applied = sqlite::migrate(&mut conn, &path, args.to).map_err(rt)?;
            (path.display().to_string(), applied)
        }
        Database::Postgres(pg) => {
            let mut client = postgres::connect(&pg).map_err(rt)?;
            let applied = postgres::migrate(&mut client, &pg, args.to).map_err(rt)?;
            (pg.describe(), applied)
        }
    };
    if applied.is_empty() {
        println!("{name}: the schema is up to date");
    } else {
        let list: Vec<String> = applied.iter().map(|v| format!("V{v}")).collect();
        println!("{name}: applied {}", list.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_daemon(args: ConfigArg) -> Result<ExitCode, Failure> {
    let config = load_config(&args)?;
    let runtime = runtime()?;
    runtime.block_on(async {
        let control = daemon::forward_signals()
            .context("cannot install signal handlers")
            .map_err(Failure::Runtime)?;
        daemon::run(args.config, config, control)
            .await
            .map_err(|e| Failure::Runtime(e.into()))
    })?;
    Ok(ExitCode::SUCCESS)
}

fn run_report(args: ReportArgs) -> Result<ExitCode, Failure> {
    use maillogsentinel::report::{self, Window};
    let config = load_config(&args.config)?;
    let now = report::now();
    let usage = |e: report::ReportError| Failure::Usage(e.into());
    let state = report::state::ReportState::load(&config.state_dir);
    let (window, default_window) = match (&args.since, &args.from, &args.to) {
        (Some(d), _, _) => {
            let d = humantime::parse_duration(d).map_err(|e| {
                Failure::Usage(anyhow::anyhow!("--since {d}: {e} (write e.g. 24h or 7d)"))
            })?;
            (
                Window {
                    from: now - d.as_secs() as i64,
                    to: now,
                },
                false,
            )
        }
        (None, Some(f), Some(t)) => (
            Window {
                from: report::parse_time(f).map_err(usage)?,
                to: report::parse_time(t).map_err(usage)?,
            },
            false,
        ),
        _ => (state.default_window(now), true),
    };
    if args.send && !args.print && args.format.is_some() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--format chooses what --print prints, and --send alone prints nothing: add --print to \
             see the report as well, or leave --format out (the mail always carries the text, \
             the HTML and the chart)"
        )));
    }
    if !default_window && window.to <= window.from {
        return Err(Failure::Usage(anyhow::anyhow!(
            "the window is empty: --from must be before --to"
        )));
    }
    let built = report::build(
        &report::Records::of(&config),
        &config.state_dir,
        window,
        args.send,
        report::Scope {
            server: args.server.as_deref(),
            this_host: &config.server,
        },
    )
    .map_err(|e| Failure::Runtime(e.into()))?;
    if args.print || !args.send {
        let tty = std::io::stdout().is_terminal();
        let out = match args.format.unwrap_or(Format::Text) {
            Format::Text => report::render::text(&built.summary, tty, args.full),
            Format::Html => {
                let png = report::chart::png(&built.summary);
                report::render::html(
                    &built.summary,
                    png.as_deref().map(|png| {
                        report::chart::image(&built.summary, report::render::ChartSrc::Png(png))
                    }),
                )
            }
            Format::Json => report::render::json(&built.summary),
        };
        if tty && !args.no_pager && args.format.unwrap_or(Format::Text) == Format::Text {
            maillogsentinel::pager::show(&out);
        } else {
            print!("{out}");
        }
    }
    if args.send {
        let Some(mail) = &config.report_mail else {
            return Err(Failure::Usage(anyhow::anyhow!(
                "--send: no recipients: set [report] to = [\"postmaster@example.org\"]"
            )));
        };
        let state_dir = config
            .state_dir
            .is_dir()
            .then_some(config.state_dir.as_path());
        let sent = report::mail::send(mail, &built, state_dir);
        if default_window && state_dir.is_some() {
            // Sent or queued: the next default report starts where this one ended.
            let _ = report::state::ReportState {
                last_to: Some(window.to),
            }
            .save(&config.state_dir);
        }
        match sent {
            Ok(()) => logging::tell(
                Level::INFO,
                &format!(
                    "report sent to {}",
                    mail.to
                        .iter()
                        .map(|m| m.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Err(e) => {
                logging::tell(Level::ERROR, &e.to_string());
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_geoip_update(args: ConfigArg) -> Result<ExitCode, Failure> {
    let config = load_config(&args)?;
    if config.geoip_downloads.is_empty() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "nothing to update: set [enrich] country_db and country_db_url (or asn_db and asn_db_url)"
        )));
    }
    let progress = std::io::stderr().is_terminal();
    let mut failed = 0;
    for d in &config.geoip_downloads {
        match maillogsentinel::enrich::update::update(d, progress) {
            Ok(desc) => println!("{}: updated ({desc})", d.target.display()),
            Err(e) => {
                logging::tell(Level::ERROR, &e.to_string());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        logging::tell(
            Level::ERROR,
            &format!(
                "{failed} of {} databases not updated; the old files are kept",
                config.geoip_downloads.len()
            ),
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_lookup(args: LookupArgs) -> Result<ExitCode, Failure> {
    let config = load_config(&args.config)?;
    let runtime = runtime()?;
    let _guard = runtime.enter();
    let enricher = Enricher::new(config.enrich.clone()).map_err(|e| Failure::Usage(e.into()))?;
    let found = runtime.block_on(futures::future::join_all(
        args.ips.iter().map(|ip| enricher.enrich(*ip)),
    ));
    for (ip, e) in args.ips.iter().zip(found) {
        print!("{}", maillogsentinel::enrich::describe(*ip, &e));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_check(args: CheckArgs) -> Result<ExitCode, Failure> {
    if let Some(user) = &args.user {
        return check_as(user, &args);
    }
    let config = load_config(&args.config)?;
    if args.pre_start {
        let runtime = runtime()?;
        for f in maillogsentinel::check::host(&config, args.smtp, &runtime) {
            if !f.ok {
                logging::tell(Level::WARN, &f.text);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("# configuration OK: {}", config.origin);
    // Which sources a start would read now, and why.
    let choice = config.journal.choose(&config.files);
    let sources = match (choice.files, choice.journal) {
        (true, true) => format!("the log files and {}", config.journal.describe()),
        (false, true) => config.journal.describe(),
        _ => "the log files".to_string(),
    };
    println!("# a start now would read {sources}: {}", choice.why);
    let runtime = runtime()?;
    let findings = maillogsentinel::check::host(&config, args.smtp, &runtime);
    let problems = findings.iter().filter(|f| !f.ok).count();
    for f in &findings {
        if f.ok {
            println!("# ok: {}", f.text);
        } else {
            println!("# PROBLEM: {}", f.text);
            logging::tell(Level::ERROR, &f.text);
        }
    }
    if problems == 0 {
        println!("# the host is ready for this configuration");
    } else {
        println!(
            "# {problems} problem(s) with the host (see above); the configuration itself is valid"
        );
    }
    print!("{}", config.to_toml());
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `check --user NAME`: the same check run as that user (what it can read and write is what
/// matters, ACLs and groups included), through util-linux's `setpriv`; needs root.
fn check_as(user: &str, args: &CheckArgs) -> Result<ExitCode, Failure> {
    let exe = std::env::current_exe()
        .context("cannot find this program's own path")
        .map_err(Failure::Runtime)?;
    // The user's primary group (setpriv wants a group; the user's own name is not always one:
    // Debian's nobody is in nogroup).
    let gid = std::process::Command::new("id")
        .args(["-g", "--", user])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .ok_or_else(|| {
            Failure::Usage(anyhow::anyhow!("--user {user}: no such user on this host"))
        })?;
    let mut cmd = std::process::Command::new("setpriv");
    cmd.arg(format!("--reuid={user}"))
        .arg(format!("--regid={gid}"))
        .arg("--init-groups")
        .arg("--")
        .arg(exe)
        .arg("check");
    // (Without -c, the child finds the configuration as this process would: the environment
    // is passed on.)
    if let Some(p) = &args.config.config {
        cmd.arg("-c").arg(p);
    }
    if args.smtp {
        cmd.arg("--smtp");
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run `setpriv` to check as {user} (util-linux)"))
        .map_err(Failure::Runtime)?;
    match status.code() {
        Some(c @ 0..=2) => Ok(ExitCode::from(c as u8)),
        _ => Err(Failure::Runtime(anyhow::anyhow!(
            "cannot check as {user}: setpriv failed (does the user exist, and is this run as root?)"
        ))),
    }
}

fn run_scan(args: ScanArgs) -> Result<ExitCode, Failure> {
    let config = load_config(&args.config)?;
    let stdout = Some(Path::new("-"));
    if args.logins.as_deref() == stdout && args.output.as_deref() == stdout {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--logins - and --output - would mix failures and logins on stdout: send one of them to a file"
        )));
    }
    if args.output.is_none() && args.logins.is_some() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--logins FILE goes with --output FILE: without --output, rows go into the configured store ({}), logins too when [output] logins is set",
            config.store.as_str()
        )));
    }
    let runtime = runtime()?;
    let enricher = if args.no_enrich {
        None
    } else {
        let _guard = runtime.enter();
        Some(Enricher::new(config.enrich.clone()).map_err(|e| Failure::Usage(e.into()))?)
    };
    let enrich = enricher.as_ref().map(|enricher| scan::ScanEnrich {
        enricher,
        runtime: &runtime,
    });
    let Some(output) = args.output.as_deref() else {
        return scan_into_store(&args, &config, enrich);
    };
    let mut sink = match output {
        p if p == Path::new("-") => CsvSink::stdout(),
        p => CsvSink::append(p),
    }
    .map_err(|e| Failure::Runtime(e.into()))?;
    let mut logins = match args.logins.as_deref() {
        Some(p) if p == Path::new("-") => Some(CsvSink::stdout()),
        Some(p) => {
            create_parent(p).map_err(Failure::Runtime)?;
            Some(CsvSink::append(p))
        }
        None => None,
    }
    .transpose()
    .map_err(|e| Failure::Runtime(e.into()))?;
    let name = sink.name().display().to_string();
    let mut recorder = scan::Recorder::new(&mut sink, logins.as_mut(), enrich);
    scan_with(&args, &config, &mut recorder, &name)
}

/// `scan` without `--output`: into the configured store, with the positions of what was read
/// (the state directory's lock held, so that no daemon records the same lines meanwhile).
fn scan_into_store(
    args: &ScanArgs,
    config: &Config,
    enrich: Option<scan::ScanEnrich<'_>>,
) -> Result<ExitCode, Failure> {
    if let Some(done) = as_state_owner(&config.state_dir) {
        return done;
    }
    let _lock = daemon::lock_state_dir(&config.state_dir).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "{e}: scan into the configured store records positions the daemon reads on from; stop the daemon first (systemctl stop maillogsentinel), or scan into a file of its own with -o FILE.csv"
        ))
    })?;
    if config.store == maillogsentinel::store::StoreKind::Csv {
        create_parent(&config.csv).map_err(Failure::Runtime)?;
    }
    let mut store = maillogsentinel::store::open(config).map_err(|e| Failure::Runtime(e.into()))?;
    let recovered = store.recover().map_err(|e| Failure::Runtime(e.into()))?;
    if let Some(r) = &recovered
        && r.repaired
    {
        logging::tell(Level::WARN, &r.note);
    }
    let ledger = scan::Ledger::new(recovered.as_ref()).map_err(|e| Failure::Runtime(e.into()))?;
    if recovered.is_none() {
        // The daemon's first start must still be one for the files this scan does not read.
        let marker = maillogsentinel::state::path(
            &config.state_dir,
            maillogsentinel::state::SCANNED_BEFORE_START,
        );
        std::fs::write(&marker, b"")
            .with_context(|| format!("cannot write {}", marker.display()))
            .map_err(Failure::Runtime)?;
    }
    let name = store.describe();
    let mut recorder = scan::Recorder::into_store(store.as_mut(), ledger, enrich);
    scan_with(args, config, &mut recorder, &name)
}

/// Scans the journal or the files `args` name into `recorder` (`output` names it for the log).
fn scan_with(
    args: &ScanArgs,
    config: &Config,
    recorder: &mut scan::Recorder<'_>,
    output: &str,
) -> Result<ExitCode, Failure> {
    if args.journal {
        let (from, to) = journal_window(args)?;
        let stats = scan::scan_journal(&config.journal, from, to, recorder)
            .map_err(|e| Failure::Runtime(e.into()))?;
        tracing::info!(journal = %config.journal.describe(), output, "scanned: {stats}");
        return Ok(ExitCode::SUCCESS);
    }
    let report = scan::scan_all(&args.files, config.max_line_bytes, &config.server, recorder)
        .map_err(|e| Failure::Runtime(e.into()))?;
    tracing::info!(
        files = args.files.len(),
        output,
        "scanned: {}",
        report.stats
    );
    if report.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        logging::tell(
            Level::ERROR,
            &format!(
                "{} of {} inputs could not be read completely (see above)",
                report.failed.len(),
                args.files.len()
            ),
        );
        Ok(ExitCode::from(1))
    }
}

/// `scan --journal`'s window in microseconds since the epoch: `--since`, or `--from`/`--to`.
fn journal_window(args: &ScanArgs) -> Result<(Option<u64>, Option<u64>), Failure> {
    use maillogsentinel::report::parse_time;
    let usage = |e: String| Failure::Usage(anyhow::anyhow!(e));
    let usec = |secs: i64| u64::try_from(secs).unwrap_or(0).saturating_mul(1_000_000);
    if let Some(d) = &args.since {
        let d = humantime::parse_duration(d)
            .map_err(|e| usage(format!("--since {d}: {e} (write e.g. 24h or 7d)")))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return Ok((Some(now.saturating_sub(d).as_micros() as u64), None));
    }
    let from = args
        .from
        .as_deref()
        .map(|t| parse_time(t).map_err(|e| usage(format!("--from: {e}"))))
        .transpose()?;
    let to = args
        .to
        .as_deref()
        .map(|t| parse_time(t).map_err(|e| usage(format!("--to: {e}"))))
        .transpose()?;
    // The end is excluded: the last microsecond before it is the last one read.
    Ok((from.map(usec), to.map(|t| usec(t).saturating_sub(1))))
}

/// The configured output's directory is ours to create (mode 0750), like the daemon's state.
fn create_parent(csv: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match csv.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .with_context(|| format!("cannot create the output directory {}", dir.display())),
        _ => Ok(()),
    }
}

/// An error and its causes on one line, each cause said once: the library's errors already
/// name their cause in their own message (`checkpoint PATH: No such file or directory`), so
/// a cause whose text the line already holds is not repeated.
/// `anonymize IN OUT`: the log rewritten, and what was done on standard error.
fn run_anonymize(args: AnonymizeArgs) -> Result<ExitCode, Failure> {
    use maillogsentinel::anonymize::{self, Anonymizer};
    let input = maillogsentinel::source::input::open(&args.input).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "{}: cannot read: {e}",
            args.input.display()
        ))
    })?;
    let mut anonymizer = Anonymizer::new().map_err(|_| {
        Failure::Runtime(anyhow::anyhow!(
            "cannot draw a random secret from the system"
        ))
    })?;
    let modified = input.modified;
    let reader = std::io::BufReader::with_capacity(1 << 16, input);
    let out_name = args.output.display().to_string();
    let summary = if args.output == Path::new("-") {
        anonymize::run(&mut anonymizer, reader, std::io::stdout().lock())
    } else {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&args.output)
            .map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
                    " (choose another name: an existing file is never overwritten)"
                } else {
                    ""
                };
                Failure::Runtime(anyhow::anyhow!("{out_name}: cannot create: {e}{hint}"))
            })?;
        let written = anonymize::run(
            &mut anonymizer,
            reader,
            std::io::BufWriter::with_capacity(1 << 16, &file),
        );
        // The input's modification time places yearless syslog timestamps: `scan` gives the
        // output's lines the years it gives the input's.
        if let (Ok(_), Some(t)) = (&written, modified) {
            let _ = file.set_modified(t);
        }
        written
    }
    .map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "anonymizing {} into {out_name}: {e}",
            args.input.display()
        ))
    })?;
    logging::tell(
        Level::INFO,
        &format!(
            "anonymized {} lines into {out_name}: {} IPv4 and {} IPv6 addresses, {} host names, {} usernames replaced (with a secret drawn for this run and kept nowhere)",
            summary.written, summary.ipv4, summary.ipv6, summary.hosts, summary.users
        ),
    );
    if summary.beyond_documentation {
        logging::tell(
            Level::WARN,
            if summary.beyond_benchmarking {
                "more IPv4 addresses than the documentation ranges hold (762): the next 131,072 are in 198.18.0.0/15 (benchmarking), the rest in 240.0.0.0/4 (reserved)"
            } else {
                "more IPv4 addresses than the documentation ranges hold (762): the rest are in 198.18.0.0/15 (benchmarking)"
            },
        );
    }
    if summary.left_out > 0 {
        logging::tell(
            Level::WARN,
            &format!(
                "{} line(s) left out (lines {:?}{}): rewritten, they would not have been recorded as the original; please say so in the bug report",
                summary.left_out,
                summary.left_out_lines,
                if summary.left_out > summary.left_out_lines.len() as u64 {
                    ", ..."
                } else {
                    ""
                }
            ),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The sections of maillogsentinel(1) clap does not know: each a list of terms and texts.
#[allow(clippy::type_complexity)]
const MAN_SECTIONS: &[(&str, &[(&str, &str)])] = &[
    (
        "FILES",
        &[
            (
                "/etc/maillogsentinel/config.toml",
                "The configuration (-c names another). `maillogsentinel check` validates it.",
            ),
            (
                "/var/lib/maillogsentinel/",
                "The state directory: the records, the checkpoints, the GeoIP databases.",
            ),
            (
                "/run/maillogsentinel/control.sock",
                "The control socket, through which status, reload, bans, ban and unban ask the daemon.",
            ),
        ],
    ),
    (
        "SIGNALS",
        &[
            (
                "SIGHUP",
                "Reload the configuration, as `maillogsentinel reload`.",
            ),
            ("SIGUSR1", "Send the report now."),
            ("SIGTERM", "Record what was read, then stop."),
        ],
    ),
    (
        "EXIT STATUS",
        &[
            ("0", "Success."),
            (
                "1",
                "A runtime failure, or problems `check` found on the host.",
            ),
            ("2", "A usage error or an invalid configuration."),
            ("3", "`status`: the daemon is not running."),
        ],
    ),
];

/// maillogsentinel(1): clap_mangen's sections, with FILES, SIGNALS, EXIT STATUS and SEE ALSO
/// written as man pages have them (the same text ends `--help`, in plain lines).
fn main_man_page(cli: clap::Command) -> std::io::Result<Vec<u8>> {
    use clap_mangen::roff::{Roff, bold, roman};
    let cli = cli.after_long_help(None::<&'static str>);
    let man = clap_mangen::Man::new(cli);
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    let mut roff = Roff::new();
    for (section, items) in MAN_SECTIONS {
        roff.control("SH", [*section]);
        for (term, text) in *items {
            roff.control("TP", [])
                .text([bold(*term)])
                .text([roman(*text)]);
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "journalctl -u maillogsentinel (its log), systemctl(1), nft(8), \
         /usr/share/doc/maillogsentinel/operations.md and use-cases.md",
    )]);
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// `generate`: the man pages and completions from the CLI definition itself, so that they
/// always say what this build accepts.
fn run_generate(args: GenerateArgs) -> Result<ExitCode, Failure> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let mut cli = Cli::command();
    let shell = match args.what {
        Generated::Man => {
            let dir = args.out.unwrap_or_else(|| PathBuf::from("."));
            std::fs::create_dir_all(&dir)
                .and_then(|_| clap_mangen::generate_to(cli.clone(), &dir))
                .and_then(|_| std::fs::write(dir.join("maillogsentinel.1"), main_man_page(cli)?))
                .map_err(|e| {
                    Failure::Runtime(anyhow::anyhow!(
                        "cannot write the man pages into {}: {e}",
                        dir.display()
                    ))
                })?;
            return Ok(ExitCode::SUCCESS);
        }
        Generated::CompleteBash => Shell::Bash,
        Generated::CompleteZsh => Shell::Zsh,
        Generated::CompleteFish => Shell::Fish,
    };
    let name = cli.get_name().to_string();
    // Made in memory, then written: clap_complete panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli, name, &mut script);
    let written = match &args.out {
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&script)
        }
        Some(path) => std::fs::write(path, &script),
    };
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(Failure::Runtime(anyhow::anyhow!(
            "cannot write the completions to {}: {e}",
            args.out
                .as_ref()
                .map_or("standard output".into(), |p| p.display().to_string())
        ))),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

fn describe(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let inner = anyhow::Error::new(io).context("checkpoint /x: entity not found");
        let e = inner.context("the sink stopped: checkpoint /x: entity not found");
        assert_eq!(
            describe(&e),
            "the sink stopped: checkpoint /x: entity not found"
        );
        let e = anyhow::anyhow!("disk full").context("cannot write rows");
        assert_eq!(describe(&e), "cannot write rows: disk full");
    }
}
