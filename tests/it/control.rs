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
    assert_eq!(s["sources"][0]["lag_secs"], 0);
    assert!(s["sources"][0]["last_read"].is_string(), "{s}");
    assert!(s["sources"][1]["last_read"].is_null(), "{s}");
    assert!(s["last_commit"].is_string(), "{s}");
    assert_eq!(
        s["by_service"],
        serde_json::json!([{"service": "postfix/submission/smtpd", "mechanism": "LOGIN", "outcome": "failure", "count": 1}])
    );
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

/// An HTTP/1.0 GET of `path` at `addr`: (status code, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, body)
}

/// A configuration with `[metrics]` on a port the system chooses.
fn metrics_config(dir: &Path, log: &Path) -> std::path::PathBuf {
    let cfg = daemon_config(dir, &[log], "backfill = true\n");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("[metrics]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[test]
fn metrics_are_scraped_while_following_and_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &(attack("u0") + &attack("u1") + &noise(1)));
    let cfg = metrics_config(dir.path(), &log);
    let out = dir.path().join("out.csv");
    let d = Daemon::start(&cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 2),
        "{}",
        d.logged()
    );
    let addr = status_json(&cfg)["metrics"].as_str().unwrap().to_string();

    // A client that connects and says nothing does not hold up the others.
    let silent = std::net::TcpStream::connect(&addr).unwrap();
    let (code, body) = http_get(&addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    for want in [
        "maillogsentinel_lines_read_total 3",
        "maillogsentinel_failures_recorded_total 2",
        "maillogsentinel_store_up 1",
        "maillogsentinel_healthy 1",
        "maillogsentinel_sources{state=\"following\"} 1",
        "maillogsentinel_auth_events_total{mechanism=\"LOGIN\",outcome=\"failure\",service=\"postfix/submission/smtpd\"} 2",
    ] {
        assert!(body.contains(want), "{want} in\n{body}");
    }
    // No address and no username in any label or value.
    assert!(
        !body.contains("203.0.113.9") && !body.contains("u0"),
        "{body}"
    );
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut p) => {
            p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
            let o = p.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "promtool: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Err(_) => eprintln!(
            "SKIPPED the promtool check: promtool is not installed (apt-get install prometheus)"
        ),
    }
    let (code, body) = http_get(&addr, "/health");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    assert_eq!(http_get(&addr, "/elsewhere").0, 404);
    // Headers that never end are cut off by the size limit, not read for ever.
    let mut big = std::net::TcpStream::connect(&addr).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(
        big,
        "GET /metrics HTTP/1.1\r\nX: {}\r\n",
        "a".repeat(64 * 1024)
    );
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(!answer.contains(" 200 "), "{answer}");
    // Reading goes on meanwhile.
    append(&log, &attack("u2"));
    assert!(
        wait_until(WAIT, || usernames(&out).len() == 3),
        "{}",
        d.logged()
    );
    let (_, body) = http_get(&addr, "/metrics");
    assert!(
        body.contains("maillogsentinel_failures_recorded_total 3"),
        "{body}"
    );
    drop(silent);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn health_turns_503_when_the_sink_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &attack("u0"));
    let cfg = metrics_config(dir.path(), &log);
    let mut cmd = bin();
    cmd.env("MAILLOGSENTINEL_TEST_CRASH", "hang-after-rows");
    let d = Daemon::start_with(cmd, &cfg, dir.path());
    assert!(
        wait_until(WAIT, || usernames(&dir.path().join("out.csv")).len() == 1),
        "{}",
        d.logged()
    );
    let addr = status_json(&cfg)["metrics"].as_str().unwrap().to_string();
    assert!(
        wait_until(WAIT, || http_get(&addr, "/health").0 == 503),
        "{}",
        d.logged()
    );
    let (_, body) = http_get(&addr, "/metrics");
    assert!(body.contains("maillogsentinel_healthy 0"), "{body}");
    d.kill9();
}
