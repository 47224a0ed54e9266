//! The database stores with real parts (SQLite files on disk, a throwaway PostgreSQL cluster on
//! 127.0.0.1): the daemon records into them exactly once across restarts, crashes and a
//! database that goes away, and reports from them say what reports from the CSV say.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dns_server::{DnsServer, Zone};
use crate::mmdb;
use crate::pg_server::PgCluster;
use crate::support::*;

/// Where a test's daemon keeps its records.
enum Db<'a> {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A database of a test cluster (by name).
    Postgres(&'a PgCluster, String),
}

impl Db<'_> {
    /// The `[output]` lines that choose this store (`instance` names the daemon for
    /// PostgreSQL).
    fn output(&self, instance: &str) -> String {
        match self {
            Db::Sqlite(path) => format!("store = \"sqlite\"\nsqlite = \"{}\"\n", path.display()),
            Db::Postgres(c, name) => format!(
                "store = \"postgres\"\npostgres = \"{}\"\ninstance = \"{instance}\"\n",
                c.url(name)
            ),
        }
    }

    /// A table's usernames in the order they were recorded.
    fn usernames(&self, table: &str) -> Vec<String> {
        match self {
            Db::Sqlite(path) => db_usernames(path, table),
            Db::Postgres(c, name) => {
                let mut client = c.client(name);
                let Ok(rows) =
                    client.query(&format!("SELECT username FROM {table} ORDER BY id"), &[])
                else {
                    return Vec::new();
                };
                rows.iter().map(|r| r.get(0)).collect()
            }
        }
    }
}

/// The daemon's test configuration writing into `db`.
fn store_config(dir: &Path, files: &[&Path], db: &Db<'_>, instance: &str) -> PathBuf {
    store_config_with(dir, files, db, instance, "")
}

/// [`store_config`] with `extra` lines in `[sources]`.
fn store_config_with(
    dir: &Path,
    files: &[&Path],
    db: &Db<'_>,
    instance: &str,
    extra: &str,
) -> PathBuf {
    let cfg = daemon_config(dir, files, extra);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[output]\n", &format!("[output]\n{}", db.output(instance)));
    std::fs::write(&cfg, text).unwrap();
    cfg
}

const HOSTILE: &str = "=HYPERLINK(\"http://evil.example\")";

/// A table's usernames in the order they were recorded.
fn db_usernames(db: &Path, table: &str) -> Vec<String> {
    if !db.exists() {
        return Vec::new();
    }
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let Ok(mut stmt) = conn.prepare(&format!("SELECT username FROM {table} ORDER BY id")) else {
        // Not migrated yet.
        return Vec::new();
    };
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn the_daemon_records_into_sqlite_once_across_restarts_and_crashes() {
    once_across_restarts_and_crashes(&|dir| Db::Sqlite(dir.join("events.db")));
}

#[test]
fn the_daemon_records_into_postgresql_once_across_restarts_and_crashes() {
    let Some(pg) = PgCluster::start() else { return };
    let n = std::sync::atomic::AtomicUsize::new(0);
    once_across_restarts_and_crashes(&|_| {
        let name = format!(
            "crash{}",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        pg.create_db(&name);
        Db::Postgres(&pg, name)
    });
}

/// A crash at each step of a commit, then a restart: every row in its table once.
fn once_across_restarts_and_crashes<'a>(db_in: &dyn Fn(&Path) -> Db<'a>) {
    for point in [
        "after-checkpoint",
        "mid-rows",
        "between-records",
        "after-rows",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("mail.log");
        let db = db_in(dir.path());
        let cfg = store_config(dir.path(), &[&log], &db, "mx");
        append(&log, &(attack("u0") + &login("l0") + &attack("u1")));
        let d = Daemon::start(&cfg, dir.path());
        assert!(
            wait_until(Duration::from_secs(15), || db.usernames("events").len()
                == 2
                && db.usernames("logins").len() == 1),
            "{point}: {}",
            d.logged()
        );
        assert_eq!(d.stop(), Some(0));

        // The next commit dies at `point`.
        let mut cmd = bin();
        cmd.env("MAILLOGSENTINEL_TEST_CRASH", point);
        let mut d = Daemon::start_with(cmd, &cfg, dir.path());
        append(
            &log,
            &(attack("u2") + &login("l1") + &attack("u3") + &attack("u4") + &login("l2")),
        );
        let status =
            wait_timeout(&mut d.child, Duration::from_secs(15)).expect("the crash happens");
        assert!(!status.success(), "{point}: {status:?}");
        assert!(
            d.logged().contains("simulated crash"),
            "{point}: {}",
            d.logged()
        );
        let landed = point == "after-rows";
        assert_eq!(
            db.usernames("events").len(),
            if landed { 5 } else { 2 },
            "{point}: one transaction, whole or not at all"
        );

        let d = Daemon::start(&cfg, dir.path());
        assert!(
            wait_until(Duration::from_secs(15), || db.usernames("events").len()
                >= 5
                && db.usernames("logins").len() >= 3),
            "{point}: {:?}\n{}",
            db.usernames("events"),
            d.logged()
        );
        // A later line after the restart: reading goes on from the recorded position.
        append(&log, &attack("u5"));
        assert!(
            wait_until(Duration::from_secs(15), || db.usernames("events").len()
                >= 6),
            "{point}: {}",
            d.logged()
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(d.stop(), Some(0));
        assert_eq!(
            db.usernames("events"),
            ["u0", "u1", "u2", "u3", "u4", "u5"],
            "{point}"
        );
        assert_eq!(db.usernames("logins"), ["l0", "l1", "l2"], "{point}");
        assert!(
            !dir.path().join("out.csv").exists(),
            "{point}: no CSV is written with the SQLite store"
        );
    }
}

/// `report --format json` for the fixture's day.
fn report_json(cfg: &Path) -> serde_json::Value {
    let o = run(&[
        "report",
        "-c",
        cfg.to_str().unwrap(),
        "--from",
        "2026-11-22",
        "--to",
        "2026-11-23",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

/// Makes a test configuration enrich through `dns` and the DB-IP-style databases in `dir`.
fn enriched(cfg: &Path, dns: &DnsServer, dir: &Path) {
    let (country, asn) = (dir.join("country.mmdb"), dir.join("asn.mmdb"));
    if !country.exists() {
        mmdb::write_dbip(&country, &asn);
    }
    let text = std::fs::read_to_string(cfg).unwrap().replace(
        NO_ENRICH,
        &format!(
            "[enrich]\ndns_servers = [\"{}\"]\ndns_timeout = \"500ms\"\ncountry_db = \"{}\"\nasn_db = \"{}\"\n",
            dns.addr,
            country.display(),
            asn.display()
        ),
    );
    std::fs::write(cfg, text).unwrap();
}

#[test]
fn reports_from_sqlite_say_what_reports_from_the_csv_say() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::Sqlite(dir.path().join("events.db"));
    reports_say_what_reports_from_the_csv_say(dir.path(), &db, "SQLite");
}

#[test]
fn reports_from_postgresql_say_what_reports_from_the_csv_say() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("report");
    let dir = tempfile::tempdir().unwrap();
    let db = Db::Postgres(&pg, "report".into());
    reports_say_what_reports_from_the_csv_say(dir.path(), &db, "PostgreSQL");
}

/// The fixture log (with hostile usernames) recorded by a daemon into the CSV and by another
/// into `db` (`record` its name in reports), enriched through a DNS server and databases;
/// then the two JSON reports of its day are the same.
fn reports_say_what_reports_from_the_csv_say(dir: &Path, db: &Db<'_>, record: &str) {
    // Names, countries and ASes in the rows (reverse DNS names and AS names come from outside:
    // the comparison covers them too).
    let dns = DnsServer::start(
        Zone::default()
            .host("198.51.100.77", "a.example.net")
            .host("203.0.113.7", "b.example.net")
            .liar("192.0.2.10", "bank.example.com", Some("198.51.100.99")),
    );
    let log = dir.join("mail.log");
    let mut text = std::fs::read_to_string(data("mail.log")).unwrap();
    text.push_str(&attack(HOSTILE));
    text.push_str(&attack("<script>alert(1)</script>"));
    std::fs::write(&log, text).unwrap();
    set_mtime(&log, fixture_mtime());
    // The CSV record and the SQLite record, each by a daemon reading the same log's history
    // (the state files beside them too: auth-backend failures, alerts).
    let csv_dir = dir.join("csv");
    std::fs::create_dir_all(&csv_dir).unwrap();
    let csv_cfg = daemon_config(&csv_dir, &[&log], "");
    enriched(&csv_cfg, &dns, dir);
    let d = Daemon::start(&csv_cfg, &csv_dir);
    // The fixture's 13 failures and the two added.
    let out = csv_dir.join("out.csv");
    assert!(
        wait_until(Duration::from_secs(15), || usernames(&out).len() == 15),
        "{:?}\n{}",
        usernames(&out),
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    let db_dir = dir.join("db");
    std::fs::create_dir_all(&db_dir).unwrap();
    let db_cfg = store_config(&db_dir, &[&log], db, "mx");
    enriched(&db_cfg, &dns, dir);
    let d = Daemon::start(&db_cfg, &db_dir);
    assert!(
        wait_until(Duration::from_secs(15), || db.usernames("events").len()
            == 15),
        "{:?}\n{}",
        db.usernames("events"),
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    // As recorded: the client's text, not the CSV's spreadsheet guard.
    let got = db.usernames("events");
    assert!(got.iter().any(|u| u == HOSTILE), "{got:?}");

    let mut from_csv = report_json(&csv_cfg);
    let mut from_db = report_json(&db_cfg);
    assert_eq!(from_db["record"], record);
    assert!(from_db["record_bytes"].as_u64().unwrap() > 0);
    for v in [&mut from_csv, &mut from_db] {
        let o = v.as_object_mut().unwrap();
        o.remove("record_bytes");
        o.remove("record");
    }
    assert!(from_csv["totals"]["attempts"].as_u64().unwrap() > 10);
    assert!(
        !from_csv["top_asns"].as_array().unwrap().is_empty()
            && !from_csv["top_countries"].as_array().unwrap().is_empty(),
        "enriched: {from_csv}"
    );
    assert_eq!(from_csv["top_ips"][0]["reverse_dns"], "a.example.net");
    assert_eq!(from_db, from_csv);

    // The text report names the store.
    let o = run(&[
        "report",
        "-c",
        db_cfg.to_str().unwrap(),
        "--from",
        "2026-11-22",
        "--to",
        "2026-11-23",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("{record} record: ")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_report_on_a_database_that_does_not_exist_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let db = dir.path().join("events.db");
    let cfg = store_config(dir.path(), &[&log], &Db::Sqlite(db.clone()), "mx");
    let o = run(&["report", "-c", cfg.to_str().unwrap(), "--since", "1d"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&db.display().to_string()),
        "{}",
        stderr(&o)
    );
}

#[test]
fn postgresql_going_away_during_a_live_run_loses_and_repeats_nothing() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("away");
    let db = Db::Postgres(&pg, "away".into());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let cfg = store_config(dir.path(), &[&log], &db, "mx");
    append(&log, &attack("u0"));
    let mut d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(Duration::from_secs(15), || db.usernames("events") == ["u0"]),
        "{}",
        d.logged()
    );
    pg.stop_server();
    append(&log, &(attack("u1") + &login("l1") + &attack("u2")));
    assert!(
        wait_until(Duration::from_secs(15), || d
            .logged()
            .contains("cannot write rows or positions")),
        "{}",
        d.logged()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(d.running(), "the daemon keeps running: {}", d.logged());
    assert_eq!(
        d.logged().matches("cannot write rows or positions").count(),
        1,
        "logged once, not at every retry: {}",
        d.logged()
    );
    pg.start_server();
    assert!(
        wait_until(Duration::from_secs(40), || db.usernames("events").len()
            >= 3),
        "{}",
        d.logged()
    );
    assert!(
        d.logged()
            .contains("writing rows and positions works again"),
        "{}",
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    // A restart resumes from the positions committed with the rows.
    let d = Daemon::start(&cfg, dir.path());
    append(&log, &attack("u3"));
    assert!(
        wait_until(Duration::from_secs(15), || db.usernames("events").len()
            >= 4),
        "{}",
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.stop(), Some(0));
    assert_eq!(db.usernames("events"), ["u0", "u1", "u2", "u3"]);
    assert_eq!(db.usernames("logins"), ["l1"]);
}

#[test]
fn two_mail_servers_record_into_one_postgresql_database_at_once() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("fleet");
    let db = Db::Postgres(&pg, "fleet".into());
    let dir = tempfile::tempdir().unwrap();
    // Each server's log names it as syslog does; each daemon names its positions.
    let servers = ["mx1", "mx2"];
    let mut daemons = Vec::new();
    let mut logs = Vec::new();
    for name in servers {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let log = sub.join("mail.log");
        let cfg = store_config(&sub, &[&log], &db, name);
        logs.push((log, cfg, sub));
    }
    let line = |server: &str, user: &str| attack(user).replacen(" mx ", &format!(" {server} "), 1);
    for (i, (log, _, _)) in logs.iter().enumerate() {
        append(log, &(line(servers[i], &format!("{}-a", servers[i]))));
    }
    for (log, cfg, sub) in &logs {
        let _ = log;
        daemons.push(Daemon::start(cfg, sub));
    }
    // Both write at once, many commits each.
    for n in 0..40 {
        for (i, (log, _, _)) in logs.iter().enumerate() {
            append(log, &line(servers[i], &format!("{}-{n}", servers[i])));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        wait_until(Duration::from_secs(30), || db.usernames("events").len()
            >= 82),
        "{}",
        daemons.iter().map(Daemon::logged).collect::<String>()
    );
    for d in daemons.drain(..) {
        assert_eq!(d.stop(), Some(0));
    }
    // Restarted, each resumes from its own positions: nothing twice.
    for (log, cfg, sub) in &logs {
        daemons.push(Daemon::start(cfg, sub));
        let _ = log;
    }
    for (i, (log, _, _)) in logs.iter().enumerate() {
        append(log, &line(servers[i], &format!("{}-z", servers[i])));
    }
    assert!(
        wait_until(Duration::from_secs(15), || db.usernames("events").len()
            >= 84),
        "{}",
        daemons.iter().map(Daemon::logged).collect::<String>()
    );
    std::thread::sleep(Duration::from_millis(300));
    for d in daemons.drain(..) {
        assert_eq!(d.stop(), Some(0));
    }
    let mut client = pg.client("fleet");
    for server in servers {
        let users: Vec<String> = client
            .query(
                "SELECT username FROM events WHERE server = $1 ORDER BY id",
                &[&server],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut want = vec![format!("{server}-a")];
        want.extend((0..40).map(|n| format!("{server}-{n}")));
        want.push(format!("{server}-z"));
        assert_eq!(users, want, "{server}: each row once, in order");
    }
    let instances: Vec<String> = client
        .query("SELECT instance FROM progress ORDER BY instance", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(instances, ["mx1", "mx2"]);
    // `db status` through either daemon's configuration sees the whole database.
    let o = run(&["db", "status", "-c", logs[0].1.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("schema version: 4 (0 migration(s) pending)")
            && text.contains("events: 84 rows"),
        "{text}"
    );
}

#[test]
fn db_status_and_migrate_say_what_the_database_holds() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let db = dir.path().join("events.db");
    let cfg = store_config(dir.path(), &[&log], &Db::Sqlite(db.clone()), "mx");
    let c = cfg.to_str().unwrap();
    let o = run(&["db", "status", "-c", c]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("not created yet"), "{}", stdout(&o));
    let o = run(&["db", "migrate", "-c", c]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("applied V1, V2, V3"), "{}", stdout(&o));
    let o = run(&["db", "migrate", "-c", c]);
    assert!(stdout(&o).contains("up to date"), "{}", stdout(&o));
    let o = run(&["db", "status", "-c", c]);
    let text = stdout(&o);
    assert!(
        text.contains("schema version: 3 (0 migration(s) pending)")
            && text.contains("V1 records_and_positions applied")
            && text.contains("events: 0 rows"),
        "{text}"
    );
    // The CSV store has no schema: a usage error that says what to set.
    let plain = daemon_config(dir.path(), &[&log], "");
    let o = run(&["db", "status", "-c", plain.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("store = \"sqlite\""), "{}", stderr(&o));
}

#[test]
fn a_daemon_started_while_postgresql_is_down_waits_for_it() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("late");
    pg.stop_server();
    let db = Db::Postgres(&pg, "late".into());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let cfg = store_config(dir.path(), &[&log], &db, "mx");
    append(&log, &attack("u0"));
    // Stopped while waiting: a clean stop.
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(Duration::from_secs(15), || d
            .logged()
            .contains("cannot reach the store")),
        "{}",
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    // Waiting, then the database comes.
    let mut d = Daemon::start(&cfg, dir.path());
    std::thread::sleep(Duration::from_secs(2));
    assert!(d.running(), "{}", d.logged());
    pg.start_server();
    append(&log, &attack("u1"));
    assert!(
        wait_until(Duration::from_secs(40), || db.usernames("events").len()
            >= 2),
        "{}",
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.stop(), Some(0));
    assert_eq!(db.usernames("events"), ["u0", "u1"]);
}

#[test]
fn scan_then_the_daemon_records_each_event_once_into_the_csv_store() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = daemon_config(
        dir.path(),
        &[&dir.path().join("mail.log")],
        "backfill = true\n",
    );
    let out = dir.path().join("out.csv");
    scan_then_the_daemon(dir.path(), &cfg, &|| usernames(&out));
}

#[test]
fn scan_then_the_daemon_records_each_event_once_into_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::Sqlite(dir.path().join("events.db"));
    let cfg = store_config_with(
        dir.path(),
        &[&dir.path().join("mail.log")],
        &db,
        "mx",
        "backfill = true\n",
    );
    scan_then_the_daemon(dir.path(), &cfg, &|| db.usernames("events"));
}

#[test]
fn scan_then_the_daemon_records_each_event_once_into_postgresql() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("scanned");
    let dir = tempfile::tempdir().unwrap();
    let db = Db::Postgres(&pg, "scanned".into());
    let cfg = store_config_with(
        dir.path(),
        &[&dir.path().join("mail.log")],
        &db,
        "mx",
        "backfill = true\n",
    );
    scan_then_the_daemon(dir.path(), &cfg, &|| db.usernames("events"));
}

/// The history scanned into the configured store (a compressed and a plain rotated file, the
/// live file with its last line still being written), scanned again, then the daemon started
/// with `backfill = true`: every event is recorded once.
fn scan_then_the_daemon(dir: &Path, cfg: &Path, recorded: &dyn Fn() -> Vec<String>) {
    use std::io::Write;
    let log = dir.join("mail.log");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all((attack("g0") + &noise(1) + &attack("g1")).as_bytes())
        .unwrap();
    std::fs::write(dir.join("mail.log.2.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(dir.join("mail.log.1"), attack("p0") + &attack("p1")).unwrap();
    let torn = attack("l1");
    let (written, rest) = torn.split_at(40);
    std::fs::write(&log, attack("l0") + written).unwrap();
    let scan = |files: &[&str]| {
        let mut args = vec!["scan", "--no-enrich", "-c", cfg.to_str().unwrap()];
        args.extend(files);
        run(&args)
    };
    let history =
        ["mail.log.2.gz", "mail.log.1", "mail.log"].map(|f| dir.join(f).display().to_string());
    let history: Vec<&str> = history.iter().map(String::as_str).collect();
    let o = scan(&history);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("no newline yet"), "{}", stderr(&o));
    assert_eq!(recorded(), ["g0", "g1", "p0", "p1", "l0"]);
    // Twice: nothing more.
    let o = scan(&history);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already recorded to its end"),
        "{}",
        stderr(&o)
    );
    assert_eq!(recorded(), ["g0", "g1", "p0", "p1", "l0"]);
    let d = Daemon::start(cfg, dir);
    assert!(
        wait_until(Duration::from_secs(20), || d.logged().contains("running")),
        "{}",
        d.logged()
    );
    // The daemon holds the state directory: a scan into the store meanwhile is refused.
    let o = scan(&[history[2]]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("stop the daemon first"),
        "{}",
        stderr(&o)
    );
    append(&log, &(rest.to_string() + &attack("l2")));
    assert!(
        wait_until(Duration::from_secs(20), || recorded().len() >= 7),
        "{:?}\n{}",
        recorded(),
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), Some(0));
    assert_eq!(recorded(), ["g0", "g1", "p0", "p1", "l0", "l1", "l2"]);
}

/// The original MailLogSentinel's record, in every form its rows take.
const LEGACY: &str = "server;date;ip;user;hostname;reverse_dns_status;country_code;asn;aso
mx1;23/10/2023 14:35;198.51.100.123;admin;host.attacker.net;OK;FR;AS64500;Example Telecom
mx1;23/10/2023 14:36;198.51.100.124;null;null;Errno -2 (Name or service not known);N/A;N/A;N/A
mx1;23/10/2023 14:37;2001:db8::7;=cmd|' /C calc'!A0;null;Timeout;DE;Example Hosting;64501
mx1;32/13/2023 14:38;198.51.100.125;bob;null;OK;FR;64500;Example Telecom
mx2;23/10/2023 14:39;not-an-address;carol;null;OK;FR;64500;Example Telecom
mx2;24/10/2023 09:00;203.0.113.5;info@example.org;mail.example.net;Failed: [Errno 1] Unknown host;US;64502;Example Cloud
";

fn db_rows(db: &Path, sql: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => "NULL".to_string(),
                    rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                    v => String::from_utf8_lossy(v.as_bytes().unwrap()).into_owned(),
                })
            })
            .collect()
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn import_loads_the_original_tools_record_once_and_reports_its_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let db = dir.path().join("events.db");
    let cfg = store_config(dir.path(), &[&log], &Db::Sqlite(db.clone()), "mx");
    let legacy = dir.path().join("maillogsentinel.csv");
    std::fs::write(&legacy, LEGACY).unwrap();
    let import = |what: &str| {
        let o = run(&[
            "import",
            "-c",
            cfg.to_str().unwrap(),
            legacy.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        (stdout(&o), stderr(&o))
    };
    let (out, err) = import("first");
    assert!(out.contains("4 rows added (the original MailLogSentinel's CSV), 2 rows that could not be read skipped"), "{out}");
    let file = legacy.display().to_string();
    assert!(
        err.contains(&format!("{file}:5: date \"32/13/2023 14:38\""))
            && err.contains(&format!("{file}:6: address \"not-an-address\"")),
        "{err}"
    );
    let rows = db_rows(
        &db,
        "SELECT server, ip, username, reverse_dns, dns_status, country, asn, as_org FROM events ORDER BY id",
    );
    assert_eq!(
        rows,
        [
            [
                "mx1",
                "198.51.100.123",
                "admin",
                "host.attacker.net",
                "ok",
                "FR",
                "64500",
                "Example Telecom"
            ],
            ["mx1", "198.51.100.124", "", "", "nxdomain", "", "NULL", ""],
            [
                "mx1",
                "2001:db8::7",
                "=cmd|' /C calc'!A0",
                "",
                "timeout",
                "DE",
                "64501",
                "Example Hosting"
            ],
            [
                "mx2",
                "203.0.113.5",
                "info@example.org",
                "mail.example.net",
                "nxdomain",
                "US",
                "64502",
                "Example Cloud"
            ],
        ]
    );
    // Local time, as the original tool wrote it: the binary runs in the tests' zone (CET with
    // its summer time), where 23/10/2023 14:35 is 12:35 UTC.
    let ts: i64 = db_rows(&db, "SELECT timestamp FROM events ORDER BY id LIMIT 1")[0][0]
        .parse()
        .unwrap();
    let want = chrono::DateTime::parse_from_rfc3339("2023-10-23T14:35:00+02:00")
        .unwrap()
        .timestamp();
    assert_eq!(ts, want);
    // Again: nothing added.
    let (out, _) = import("again");
    assert!(
        out.contains("0 rows added") && out.contains("imported before"),
        "{out}"
    );
    assert_eq!(db_rows(&db, "SELECT COUNT(*) FROM events")[0][0], "4");
    // Grown: only the new row.
    append(
        &legacy,
        "mx2;25/10/2023 10:00;192.0.2.9;dave;null;OK;FR;64500;Example Telecom\n",
    );
    let (out, _) = import("grown");
    assert!(out.contains("1 rows added"), "{out}");
    assert_eq!(db_rows(&db, "SELECT COUNT(*) FROM events")[0][0], "5");
    // The CSV store takes no import: it says what to set.
    let plain = daemon_config(dir.path(), &[&log], "");
    let o = run(&[
        "import",
        "-c",
        plain.to_str().unwrap(),
        legacy.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("store = \"sqlite\""), "{}", stderr(&o));
}

#[test]
fn import_of_this_programs_csv_gives_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let mut text = std::fs::read_to_string(data("mail.log")).unwrap();
    text.push_str(&attack(HOSTILE));
    std::fs::write(&log, text).unwrap();
    set_mtime(&log, fixture_mtime());
    let csv_dir = dir.path().join("csv");
    std::fs::create_dir_all(&csv_dir).unwrap();
    let csv_cfg = daemon_config(&csv_dir, &[&log], "");
    let o = run(&[
        "scan",
        "--no-enrich",
        "-c",
        csv_cfg.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let db_dir = dir.path().join("db");
    std::fs::create_dir_all(&db_dir).unwrap();
    let db = db_dir.join("events.db");
    let db_cfg = store_config(&db_dir, &[&log], &Db::Sqlite(db.clone()), "mx");
    let csv = csv_dir.join("out.csv");
    let o = run(&[
        "import",
        "-c",
        db_cfg.to_str().unwrap(),
        csv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("14 rows added (this program's CSV)"),
        "{}",
        stdout(&o)
    );
    // Stored as sent, not as the CSV guards it.
    assert!(
        db_usernames(&db, "events").iter().any(|u| u == HOSTILE),
        "{:?}",
        db_usernames(&db, "events")
    );
    let mut a = report_json(&csv_cfg);
    let mut b = report_json(&db_cfg);
    for v in [&mut a, &mut b] {
        let o = v.as_object_mut().unwrap();
        o.remove("record_bytes");
        o.remove("record");
    }
    assert_eq!(a, b);
}

#[test]
fn a_database_of_an_older_schema_is_migrated_at_start_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let db = dir.path().join("events.db");
    let cfg = store_config(dir.path(), &[&log], &Db::Sqlite(db.clone()), "mx");
    let c = cfg.to_str().unwrap();
    // Version 1, as an older maillogsentinel left it, with a row in it.
    let o = run(&["db", "migrate", "-c", c, "--to", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "INSERT INTO events (timestamp, logged, server, service, ip, ip_key, username, mechanism, reason, client_hostname, reverse_dns, dns_status, country, asn, as_org)
             VALUES (1795330800, '2026-11-22T08:00:00+01:00', 'mx', 'postfix/smtpd', '192.0.2.1', x'04c0000201', 'old', 'LOGIN', '', '', '', '', '', NULL, '');",
        )
        .unwrap();
    let o = run(&["db", "status", "-c", c]);
    assert!(
        stdout(&o).contains("schema version: 1 (2 migration(s) pending)"),
        "{}",
        stdout(&o)
    );
    // (A store that holds rows and no positions is not back-filled: the line comes after the
    // start.)
    append(&log, &noise(0));
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(Duration::from_secs(15), || d.logged().contains(" running")),
        "{}",
        d.logged()
    );
    append(&log, &attack("new"));
    assert!(
        wait_until(Duration::from_secs(15), || db_usernames(&db, "events")
            .len()
            == 2),
        "{}",
        d.logged()
    );
    assert_eq!(d.stop(), Some(0));
    assert_eq!(db_usernames(&db, "events"), ["old", "new"]);
    let o = run(&["db", "status", "-c", c]);
    assert!(
        stdout(&o).contains("schema version: 3 (0 migration(s) pending)"),
        "{}",
        stdout(&o)
    );
    // Version 3 indexes the record by time alone.
    let indexes: Vec<String> = rusqlite::Connection::open(&db)
        .unwrap()
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexes, ["events_ts"]);
}

/// A fleet's database from before version 4 (rows of server `mx` recorded by an instance
/// since renamed): at start the servers with rows are listed, the (server, time) indexes go,
/// and a first start with `backfill = "auto"` still tells a known server (its history not
/// recorded twice) from a new one (its history read).
#[test]
fn a_fleet_database_of_schema_3_is_migrated_and_still_knows_which_servers_have_rows() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("older");
    let db = Db::Postgres(&pg, "older".into());
    let dir = tempfile::tempdir().unwrap();
    let setup = |name: &str, server: &str| {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let log = sub.join("mail.log");
        let extra = format!("server = \"{server}\"\n");
        let cfg = store_config_with(&sub, &[&log], &db, name, &extra);
        (log, cfg, sub)
    };
    // The instance renamed: `mx-renamed` for the server `mx`; `mx2` a new member.
    let (log, cfg, sub) = setup("mx-renamed", "mx");
    let o = run(&["db", "migrate", "-c", cfg.to_str().unwrap(), "--to", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut client = pg.client("older");
    client
        .batch_execute(
            "INSERT INTO events (timestamp, logged, server, service, ip, username, mechanism, reason, client_hostname, reverse_dns, dns_status, country, asn, as_org)
             VALUES ('2026-11-22T07:00:00Z', '2026-11-22T08:00:00+01:00', 'mx', 'postfix/smtpd', '192.0.2.1', 'old', 'LOGIN', '', '', '', '', '', NULL, '')",
        )
        .unwrap();
    // The history in each log before the first start.
    append(&log, &attack("mx-history"));
    let (log2, cfg2, sub2) = setup("mx2", "mx2");
    append(&log2, &attack("mx2-history").replacen(" mx ", " mx2 ", 1));
    let d = Daemon::start(&cfg, &sub);
    let d2 = Daemon::start(&cfg2, &sub2);
    for d in [&d, &d2] {
        assert!(
            wait_until(Duration::from_secs(15), || d.logged().contains(" running")),
            "{}",
            d.logged()
        );
    }
    append(&log, &attack("mx-new"));
    append(&log2, &attack("mx2-new").replacen(" mx ", " mx2 ", 1));
    assert!(
        wait_until(Duration::from_secs(15), || db.usernames("events").len()
            >= 4),
        "{}{}",
        d.logged(),
        d2.logged()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.stop(), Some(0));
    assert_eq!(d2.stop(), Some(0));
    let mut users = db.usernames("events");
    users.sort();
    assert_eq!(
        users,
        ["mx-new", "mx2-history", "mx2-new", "old"],
        "the known server's history is not recorded again; the new member's is"
    );
    let servers: Vec<String> = client
        .query("SELECT server FROM servers ORDER BY server", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(servers, ["mx", "mx2"]);
    let indexes: Vec<String> = client
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename IN ('events', 'logins') ORDER BY indexname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        indexes,
        [
            "events_pkey",
            "events_timestamp",
            "logins_pkey",
            "logins_timestamp_idx"
        ]
    );
}

#[test]
fn a_server_whose_rows_an_older_version_wrote_unlisted_is_still_known_to_have_rows() {
    // During a fleet's upgrade, a daemon of a version before schema 4 still running writes
    // rows without listing its server in `servers`. Its instance renamed afterwards, the new
    // version must still see those rows and not record the history again.
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("unlisted");
    let db = Db::Postgres(&pg, "unlisted".into());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let cfg = store_config_with(dir.path(), &[&log], &db, "mx-renamed", "server = \"mx\"\n");
    let o = run(&["db", "migrate", "-c", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut client = pg.client("unlisted");
    client
        .batch_execute(
            "INSERT INTO events (timestamp, logged, server, service, ip, username, mechanism, reason, client_hostname, reverse_dns, dns_status, country, asn, as_org)
             VALUES ('2026-11-22T07:00:00Z', '2026-11-22T08:00:00+01:00', 'mx', 'postfix/smtpd', '192.0.2.1', 'old', 'LOGIN', '', '', '', '', '', NULL, '')",
        )
        .unwrap();
    let listed = |c: &mut postgres::Client| -> Vec<String> {
        c.query("SELECT server FROM servers ORDER BY server", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert!(
        listed(&mut client).is_empty(),
        "as an older version left it"
    );
    append(&log, &attack("mx-history"));
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(Duration::from_secs(15), || d.logged().contains(" running")),
        "{}",
        d.logged()
    );
    append(&log, &attack("mx-new"));
    assert!(
        wait_until(Duration::from_secs(15), || db.usernames("events").len()
            >= 2),
        "{}",
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(300));
    let logged = d.logged();
    assert_eq!(d.stop(), Some(0));
    let mut users = db.usernames("events");
    users.sort();
    assert_eq!(
        users,
        ["mx-new", "old"],
        "the history is not recorded again: {logged}"
    );
    assert!(logged.contains("not listed in `servers`"), "{logged}");
    assert_eq!(listed(&mut client), ["mx"]);
}

#[test]
fn postgresql_over_tls_as_libpq_s_sslmode_says() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("tls");
    let cert = pg.restart_with_tls_only();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    // `db status` connects like the daemon; the server refuses clients without TLS.
    let status = |query: &str| {
        let url = format!("postgres://postgres@localhost:{}/tls?{query}", pg.port);
        let cfg = daemon_config(dir.path(), &[&log], "");
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            "[output]\n",
            &format!("[output]\nstore = \"postgres\"\npostgres = \"{url}\"\n"),
        );
        std::fs::write(&cfg, text).unwrap();
        run(&["db", "status", "-c", cfg.to_str().unwrap()])
    };
    let o = status("sslmode=disable");
    assert!(!o.status.success(), "without TLS the server refuses");
    assert!(stderr(&o).contains("cannot connect"), "{}", stderr(&o));
    // Encrypted, the certificate not checked (libpq's require).
    let o = status("sslmode=require");
    assert!(o.status.success(), "{}", stderr(&o));
    // Checked: against the system's roots it is unknown...
    let o = status("sslmode=verify-full");
    assert!(!o.status.success());
    assert!(
        stderr(&o).to_lowercase().contains("certificate"),
        "{}",
        stderr(&o)
    );
    // ... and trusted through sslrootcert.
    let o = status(&format!(
        "sslmode=verify-full&sslrootcert={}",
        cert.display()
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("schema version"), "{}", stdout(&o));
}

#[test]
fn retention_deletes_old_rows_from_a_database_and_the_csv_store_says_it_does_not() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("keep");
    let dir = tempfile::tempdir().unwrap();
    for (name, db) in [
        ("sqlite", Db::Sqlite(dir.path().join("events.db"))),
        ("postgres", Db::Postgres(&pg, "keep".into())),
    ] {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let log = sub.join("mail.log");
        // Days old (the syslog date of the fixtures) and now (RFC 3339, from the clock).
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        append(
            &log,
            &(attack("old")
                + &login("old-login")
                + &attack("recent").replacen("Nov 22 08:01:04", &now, 1)),
        );
        let cfg = store_config(&sub, &[&log], &db, "mx");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("[output]\n", "[output]\nretention = \"1d\"\n");
        std::fs::write(&cfg, text).unwrap();
        let d = Daemon::start(&cfg, &sub);
        // The rows land, then the retention deletes what is older than a day.
        assert!(
            wait_until(Duration::from_secs(15), || d
                .logged()
                .contains("retention: ")),
            "{name}: {}",
            d.logged()
        );
        assert!(
            wait_until(Duration::from_secs(15), || db.usernames("events")
                == ["recent"]
                && db.usernames("logins").is_empty()),
            "{name}: {:?} {:?}\n{}",
            db.usernames("events"),
            db.usernames("logins"),
            d.logged()
        );
        assert_eq!(d.stop(), Some(0));
    }
    // The CSV store's files are only appended: `check` says so.
    let log = dir.path().join("mail.log");
    let cfg = daemon_config(dir.path(), &[&log], "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[output]\n", "[output]\nretention = \"180d\"\n");
    std::fs::write(&cfg, text).unwrap();
    let o = run(&["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("output.retention") && stderr(&o).contains("CSV store"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn purge_removes_a_person_from_the_csv_store_and_the_daemon_goes_on_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = daemon_config(dir.path(), &[&dir.path().join("mail.log")], "");
    let (out, logins) = (dir.path().join("out.csv"), dir.path().join("logins.csv"));
    purge_then_the_daemon(dir.path(), &cfg, &|table| {
        usernames(if table == "events" { &out } else { &logins })
    });
}

#[test]
fn purge_removes_a_person_from_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::Sqlite(dir.path().join("events.db"));
    let cfg = store_config(dir.path(), &[&dir.path().join("mail.log")], &db, "mx");
    purge_then_the_daemon(dir.path(), &cfg, &|table| db.usernames(table));
}

#[test]
fn purge_removes_a_person_from_postgresql() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("purged");
    let dir = tempfile::tempdir().unwrap();
    let db = Db::Postgres(&pg, "purged".into());
    let cfg = store_config(dir.path(), &[&dir.path().join("mail.log")], &db, "mx");
    purge_then_the_daemon(dir.path(), &cfg, &|table| db.usernames(table));
}

/// A failure of `user` from `ip`.
fn attack_from(user: &str, ip: &str) -> String {
    attack(user).replace("203.0.113.9", ip)
}

/// Records a few people, purges one by username (their failures, logins and Dovecot's
/// verdicts on them) and an address, then lets the daemon go on: the rest is kept, new lines
/// are recorded once.
fn purge_then_the_daemon(dir: &Path, cfg: &Path, recorded: &dyn Fn(&str) -> Vec<String>) {
    let log = dir.join("mail.log");
    append(
        &log,
        &[
            attack_from("alice", "198.51.100.1"),
            attack_from("Bob", "198.51.100.2"),
            attack_from("carol", "198.51.100.2"),
            login("bob"),
            login("carol"),
            attack_from("dave", "2001:db8::3"),
        ]
        .concat(),
    );
    let d = Daemon::start(cfg, dir);
    assert!(
        wait_until(Duration::from_secs(20), || recorded("events").len() == 4
            && recorded("logins").len() == 2),
        "{:?}\n{}",
        recorded("events"),
        d.logged()
    );
    let purge = |args: &[&str]| {
        let mut all = vec!["purge", "-c", cfg.to_str().unwrap()];
        all.extend(args);
        run(&all)
    };
    // Not while the daemon writes.
    let o = purge(&["--user", "bob"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("stop it first"), "{}", stderr(&o));
    assert_eq!(d.stop(), Some(0));
    let verdicts = dir.join("state/auth-verdicts.csv");
    std::fs::write(
        &verdicts,
        "2026-11-22T08:01:04+01:00,198.51.100.2,BOB,known\r\n2026-11-22T08:01:05+01:00,198.51.100.1,alice,unknown\r\n",
    )
    .unwrap();
    // Neither an address nor a username: refused.
    let o = purge(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    let o = purge(&["--user", "bob"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("1 failed logins and 1 logins")
            && stdout(&o).contains("1 rows from")
            && stdout(&o).contains("auth-verdicts.csv"),
        "{}",
        stdout(&o)
    );
    assert_eq!(recorded("events"), ["alice", "carol", "dave"]);
    assert_eq!(recorded("logins"), ["carol"]);
    assert_eq!(
        std::fs::read_to_string(&verdicts).unwrap(),
        "2026-11-22T08:01:05+01:00,198.51.100.1,alice,unknown\r\n"
    );
    // By address (written another way), only before a time: a time before every row keeps
    // them all, one after removes the address's.
    let o = purge(&["--ip", "2001:db8:0:0::3", "--before", "2000-01-01"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(recorded("events"), ["alice", "carol", "dave"]);
    let o = purge(&["--ip", "2001:db8:0:0::3", "--before", "2100-01-01"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(recorded("events"), ["alice", "carol"]);

    // The daemon reads on where it was: nothing again, nothing lost.
    let d = Daemon::start(cfg, dir);
    append(&log, &attack_from("erin", "198.51.100.5"));
    assert!(
        wait_until(Duration::from_secs(20), || recorded("events").len() >= 3),
        "{:?}\n{}",
        recorded("events"),
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), Some(0));
    assert_eq!(recorded("events"), ["alice", "carol", "erin"]);
    assert_eq!(recorded("logins"), ["carol"]);
}

#[test]
fn report_server_counts_one_mail_server_of_the_csv_store() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = daemon_config(dir.path(), &[&dir.path().join("mail.log")], "");
    report_server(dir.path(), &cfg);
}

#[test]
fn report_server_counts_one_mail_server_in_sql_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::Sqlite(dir.path().join("events.db"));
    let cfg = store_config(dir.path(), &[&dir.path().join("mail.log")], &db, "mx");
    report_server(dir.path(), &cfg);
}

#[test]
fn report_server_counts_one_mail_server_in_sql_on_postgresql() {
    let Some(pg) = PgCluster::start() else { return };
    pg.create_db("fleet_report");
    let dir = tempfile::tempdir().unwrap();
    let db = Db::Postgres(&pg, "fleet_report".into());
    let cfg = store_config(dir.path(), &[&dir.path().join("mail.log")], &db, "mx");
    report_server(dir.path(), &cfg);
}

/// Failures logged by two hosts (mx1: 3 from two addresses, mx2: 2 from one), scanned into
/// the store: `report --server` counts one host's, the default every host's.
fn report_server(dir: &Path, cfg: &Path) {
    let on = |host: &str, user: &str, ip: &str| {
        attack_from(user, ip).replace(" mx postfix", &format!(" {host} postfix"))
    };
    let log = dir.join("mail.log");
    append(
        &log,
        &[
            on("mx1", "alice", "198.51.100.1"),
            on("mx2", "bob", "198.51.100.2"),
            on("mx1", "carol", "198.51.100.1"),
            on("mx2", "dave", "198.51.100.2"),
            on("mx1", "erin", "198.51.100.3"),
        ]
        .concat(),
    );
    let o = run(&[
        "scan",
        "--no-enrich",
        "-c",
        cfg.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report = |extra: &[&str]| {
        let mut args = vec![
            "report",
            "-c",
            cfg.to_str().unwrap(),
            "--from",
            "2026-11-22",
            "--to",
            "2026-11-23",
        ];
        args.extend(extra);
        run(&args)
    };
    let json = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["--format", "json"];
        args.extend(extra);
        let o = report(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    let all = json(&[]);
    assert_eq!(all["totals"]["attempts"], 5, "{all}");
    assert!(all.get("server").is_none(), "{all}");
    let mx1 = json(&["--server", "mx1"]);
    assert_eq!(mx1["server"], "mx1");
    assert_eq!(mx1["totals"]["attempts"], 3, "{mx1}");
    assert_eq!(mx1["totals"]["distinct_ips"], 2, "{mx1}");
    let users: Vec<&str> = mx1["top_usernames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["alice", "carol", "erin"], "{mx1}");
    let mx2 = json(&["--server", "mx2"]);
    assert_eq!(mx2["totals"]["attempts"], 2, "{mx2}");
    assert_eq!(json(&["--server", "mx3"])["totals"]["attempts"], 0);
    // The terminal report says which server it covers.
    let o = report(&["--server", "mx2"]);
    assert!(stdout(&o).contains("server mx2 only"), "{}", stdout(&o));
    // A name that is no host name is refused before anything is read.
    let o = report(&["--server", "mx1' OR '1'='1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("host name"), "{}", stderr(&o));
}

#[test]
fn after_scan_the_daemon_s_first_start_still_applies_backfill_to_files_scan_did_not_read() {
    // backfill = "auto" (the default) into a record that holds rows: the rotated file scanned
    // resumes where the scan stopped, the live file (never scanned) is followed from its end,
    // as a first start without a scan would.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let cfg = daemon_config(dir.path(), &[&log], "");
    let out = dir.path().join("out.csv");
    std::fs::write(dir.path().join("mail.log.1"), attack("r0") + &attack("r1")).unwrap();
    append(&log, &attack("old"));
    let o = run(&[
        "scan",
        "--no-enrich",
        "-c",
        cfg.to_str().unwrap(),
        dir.path().join("mail.log.1").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(usernames(&out), ["r0", "r1"]);
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(Duration::from_secs(20), || d.logged().contains("running")),
        "{}",
        d.logged()
    );
    append(&log, &attack("new"));
    assert!(
        wait_until(Duration::from_secs(20), || usernames(&out).len() >= 3),
        "{}",
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), Some(0));
    assert_eq!(usernames(&out), ["r0", "r1", "new"]);
    assert!(
        !dir.path().join("state/scanned-before-first-start").exists(),
        "the first start is over"
    );
    // A restart is an ordinary restart: nothing again.
    let d = Daemon::start(&cfg, dir.path());
    append(&log, &attack("later"));
    assert!(
        wait_until(Duration::from_secs(20), || usernames(&out).len() >= 4),
        "{}",
        d.logged()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.stop(), Some(0));
    assert_eq!(usernames(&out), ["r0", "r1", "new", "later"]);
}
