//! The control socket with the real binary: `status` (text and JSON) and `reload` (good and
//! bad) against a running daemon, `status` when it is stopped, and hostile clients (garbage, a
//! huge request, silent clients, more clients than it serves) while it keeps following.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

fn status_json(cfg: &Path) -> serde_json::Value {
    let o = run(&["status", "-c", cfg.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn status_and_reload_answer_about_the_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let missing = dir.path().join("missing.log");
    append(&log, &attack("u0"));
    let cfg = daemon_config(dir.path(), &[&log, &missing], "backfill = true\n");
    let no_asn = dir.path().join("no-such-asn.mmdb");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "asn_db = \"\"",
            &format!("asn_db = \"{}\"", no_asn.display()),
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&dir.path().join("out.csv")) == ["u0"]),
        "{}",
        d.logged()
    );

    let o = run(&["status", "-c", c]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("maillogsentinel ")
            && first.contains("running for")
            && first.contains("1 failed logins recorded"),
        "{text}"
    );
    assert!(
        text.contains("waiting for the file") && text.contains("Counters since start"),
        "{text}"
    );
    assert!(
        text.contains("GeoIP ASN database") && text.contains("MISSING"),
        "{text}"
    );

    let s = status_json(&cfg);
    assert_eq!(s["pid"], d.child.id());
    assert_eq!(s["counters"]["failures"], 1);
    let size = std::fs::metadata(&log).unwrap().len();
    assert_eq!(s["sources"][0]["name"], log.display().to_string());
    assert_eq!(s["sources"][0]["state"], "following");
    assert_eq!(s["sources"][0]["offset"], size);
    assert_eq!(s["sources"][0]["lag_bytes"], 0);
    assert_eq!(s["sources"][1]["state"], "waiting for the file");
    assert!(s["store"].as_str().unwrap().starts_with("CSV "), "{s}");
    // What is wrong comes first, in the list and in the summary systemd shows.
    assert_eq!(
        s["problems"],
        serde_json::json!([
            format!("waiting for {}", missing.display()),
            "GeoIP database missing: ASN (maillogsentinel geoip update)"
        ])
    );
    assert!(
        s["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!("waiting for {}; GeoIP", missing.display())),
        "{s}"
    );
    assert_eq!(
        s["enrichment"]["geoip"][0]["database"],
        serde_json::Value::Null
    );

    // Nothing changed.
    let o = run(&["reload", "-c", c]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("nothing changed"), "{}", stdout(&o));
    // A change: its key, and the daemon follows the new file at once.
    let other = dir.path().join("other.log");
    append(&other, &attack("o0"));
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            &format!("\"{}\"]", missing.display()),
            &format!("\"{}\"]", other.display()),
        ),
    )
    .unwrap();
    let o = run(&["reload", "-c", c]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("configuration reloaded: sources.files"),
        "{}",
        stdout(&o)
    );
    assert!(
        wait_until(WAIT, || usernames(&dir.path().join("out.csv")).len() == 2),
        "{}",
        d.logged()
    );
    // A mistake: the file, the line, the key; the running configuration is kept.
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        good.replace("poll_interval = \"200ms\"", "poll_interval = \"soon\""),
    )
    .unwrap();
    let o = run(&["reload", "-c", c]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("poll_interval") && err.contains("line") && err.contains("kept"),
        "{err}"
    );
    // Still following with the configuration it had.
    append(&log, &attack("u1"));
    assert!(
        wait_until(WAIT, || usernames(&dir.path().join("out.csv")).len() == 3),
        "{}",
        d.logged()
    );
    std::fs::write(&cfg, &good).unwrap();
    assert_eq!(status_json(&cfg)["counters"]["failures"], 3);

    assert_eq!(d.stop(), Some(0));
    let o = run(&["status", "-c", c]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stdout(&o).contains("not running"), "{}", stdout(&o));
    let o = run(&["reload", "-c", c]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

/// Sends `bytes` on a new connection and reads the answer line.
fn exchange(socket: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The daemon may close before reading everything (a request over the limit).
    let _ = s.write_all(bytes);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

#[test]
fn hostile_clients_on_the_control_socket_do_not_disturb_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &attack("u0"));
    let cfg = daemon_config(dir.path(), &[&log], "backfill = true\n");
    let out = dir.path().join("out.csv");
    let mut d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 1),
        "{}",
        d.logged()
    );
    let socket = dir.path().join("state/control.sock");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660);

    // Garbage, an unknown word, a request far over the limit: each answered with an error.
    let a = exchange(&socket, b"\x00\xff\xfe garbage \x01\n");
    assert!(a.contains("\"answer\":\"error\""), "{a}");
    let a = exchange(&socket, b"shutdown\n");
    assert!(a.contains("unknown request"), "{a}");
    let a = exchange(&socket, &vec![b'x'; 1 << 20]);
    assert!(a.contains("longer than"), "{a}");

    // Silent clients, more than are served at once: the extra ones are told the daemon is
    // busy, the silent ones are dropped after the request timeout, and reading goes on.
    let silent: Vec<UnixStream> = (0..40)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    append(&log, &attack("u1"));
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 2),
        "{}",
        d.logged()
    );
    let start = Instant::now();
    let answers: Vec<String> = silent
        .into_iter()
        .map(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut a = String::new();
            let _ = s.read_to_string(&mut a);
            a
        })
        .collect();
    assert!(answers.iter().any(|a| a.contains("busy")), "{answers:?}");
    assert!(
        answers.iter().any(|a| a.contains("no request within")),
        "{answers:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    // Then served as ever.
    assert_eq!(status_json(&cfg)["counters"]["failures"], 2);
    assert!(d.running());
    assert_eq!(d.stop(), Some(0));
    assert!(!socket.exists(), "the socket is removed at stop");
}
