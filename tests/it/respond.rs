//! The responder with real nftables: the daemon runs in a "server" network namespace with our
//! table and a TCP listener on a mail port; a "client" namespace, joined by a veth pair,
//! connects from an attacker's address and from an allowlisted one (documentation ranges).
//! These tests need root (namespaces, nftables); without it, or without `ip` and `nft`, they
//! say they skipped. The `exec` action needs neither and always runs.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// The server's address on the veth pair.
const SERVER: &str = "203.0.113.1";
/// The attacker.
const ATTACKER: &str = "203.0.113.66";
/// Another attacker, for counts across a restart.
const SECOND: &str = "203.0.113.67";
/// An address in `ignore`.
const FRIEND: &str = "203.0.113.10";
/// The mail port the listener serves (and the rule closes).
const PORT: u16 = 2525;

/// Two namespaces joined by a veth pair, removed when dropped, and a listener in the server's.
struct Netns {
    server: String,
    client: String,
    listener: Child,
    /// More listeners (IPv6), killed with the first.
    more: Vec<Child>,
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Netns {
    /// The namespaces, or why they cannot be made here.
    fn new(tag: &str) -> Result<Netns, String> {
        if unsafe { libc::geteuid() } != 0 {
            return Err("they need root (network namespaces and nftables)".into());
        }
        if !sh(&["nft", "--version"]) || !sh(&["ip", "-V"]) {
            return Err("`nft` or `ip` is missing (apt-get install nftables iproute2)".into());
        }
        let id = format!("{}{tag}", std::process::id() % 100_000);
        let (server, client) = (format!("mls-s{id}"), format!("mls-c{id}"));
        let (vs, vc) = (format!("vs{id}"), format!("vc{id}"));
        if !sh(&["ip", "netns", "add", &server]) {
            return Err("`ip netns add` failed (no network namespaces here)".into());
        }
        let mut ns = Netns {
            server: server.clone(),
            client: client.clone(),
            listener: Command::new("true").spawn().unwrap(),
            more: Vec::new(),
        };
        let ok = [
            vec!["ip", "netns", "add", &client],
            vec![
                "ip", "link", "add", &vs, "netns", &server, "type", "veth", "peer", "name", &vc,
                "netns", &client,
            ],
            vec![
                "ip",
                "-n",
                &server,
                "addr",
                "add",
                "203.0.113.1/24",
                "dev",
                &vs,
            ],
            vec![
                "ip",
                "-n",
                &client,
                "addr",
                "add",
                "203.0.113.66/24",
                "dev",
                &vc,
            ],
            vec![
                "ip",
                "-n",
                &client,
                "addr",
                "add",
                "203.0.113.67/24",
                "dev",
                &vc,
            ],
            vec![
                "ip",
                "-n",
                &client,
                "addr",
                "add",
                "203.0.113.10/24",
                "dev",
                &vc,
            ],
            vec!["ip", "-n", &server, "link", "set", &vs, "up"],
            vec!["ip", "-n", &client, "link", "set", &vc, "up"],
            vec!["ip", "-n", &server, "link", "set", "lo", "up"],
        ]
        .iter()
        .all(|a| sh(a));
        if !ok {
            return Err("the veth pair could not be set up".into());
        }
        // A listener on the mail port, accepting for ever.
        ns.listener = Command::new("ip")
            .args(["netns", "exec", &server, "python3", "-c"])
            .arg(format!(
                "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{SERVER}',{PORT}))\ns.listen(64)\nwhile True:\n  c,_=s.accept(); c.close()\n"
            ))
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("python3: {e}"))?;
        // Wait until it answers (from the client side).
        if !wait_until(Duration::from_secs(10), || ns.connects(FRIEND)) {
            return Err("the listener never answered".into());
        }
        Ok(ns)
    }

    /// Whether a TCP connection from `source` (in the client namespace) to the listener is
    /// accepted within a second.
    fn connects(&self, source: &str) -> bool {
        self.connects_to(SERVER, source)
    }

    /// Whether a TCP connection from `source` to `server` (either family) is accepted within a
    /// second.
    fn connects_to(&self, server: &str, source: &str) -> bool {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.client,
            "python3",
            "-c",
            &format!(
                "import socket\nsocket.create_connection(('{server}',{PORT}),timeout=1,source_address=('{source}',0)).close()"
            ),
        ])
    }

    /// Every command in the namespaces, or false.
    fn run_all(&self, commands: &[&str]) -> bool {
        commands.iter().all(|c| {
            let c = c
                .replace("{S}", &self.server)
                .replace("{C}", &self.client)
                .replace("{vs}", &self.server.replace("mls-s", "vs"))
                .replace("{vc}", &self.client.replace("mls-c", "vc"));
            let args: Vec<&str> = c.split_whitespace().collect();
            sh(&args)
        })
    }

    /// The server's set `set` as `nft list set` shows it (the set must be there).
    fn set(&self, set: &str) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server,
                "nft",
                "list",
                "set",
                "inet",
                "maillogsentinel",
                set,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nft list set {set}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs an nft script in the server namespace.
    fn nft(&self, script: &str) -> bool {
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &self.server, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut nft.stdin.take().unwrap(), script.as_bytes()).unwrap();
        nft.wait().unwrap().success()
    }

    /// The binary, run in the server namespace.
    fn bin(&self) -> Command {
        let mut c = isolated(Command::new("ip"));
        c.args([
            "netns",
            "exec",
            &self.server,
            env!("CARGO_BIN_EXE_maillogsentinel"),
        ]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for l in std::iter::once(&mut self.listener).chain(self.more.iter_mut()) {
            let _ = l.kill();
            let _ = l.wait();
        }
        sh(&["ip", "netns", "del", &self.server]);
        sh(&["ip", "netns", "del", &self.client]);
    }
}

/// A failure line of `ip` for `user`, logged `ago` seconds before now (RFC 3339: the rules
/// count failures in their window before now).
fn fail(ip: &str, user: &str) -> String {
    fail_at(&now(), ip, user)
}

/// Now, as a log's RFC 3339 stamp.
fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

/// A failure line stamped `stamp`.
fn fail_at(stamp: &str, ip: &str, user: &str) -> String {
    format!(
        "{stamp} mx postfix/submission/smtpd[77]: warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username={user}\n"
    )
}

/// A successful Dovecot login of `user` from `ip`, stamped `stamp`.
fn login_at(stamp: &str, ip: &str, user: &str) -> String {
    format!(
        "{stamp} mx dovecot: imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip={SERVER}, mpid=1, session=<s>\n"
    )
}

/// A config with the responder on, closing [`PORT`].
fn config(dir: &Path, log: &Path, response: &str) -> std::path::PathBuf {
    daemon_config(
        dir,
        &[log],
        &format!(
            "\n[response]\nenabled = true\nports = [{PORT}]\nignore = [\"{FRIEND}\"]\n{response}\n[[response.rule]]\nname = \"per-address\"\nkey = \"ip\"\nmax = 3\nwindow = \"10m\"\nban = \"1h\"\n"
        ),
    )
}

/// A test's directory: a log holding one line that is no failure, and a config with the
/// responder on (`response`: more `[response]` keys), readable by anyone when `open` (for a
/// daemon run as another user).
struct Setup {
    dir: tempfile::TempDir,
    log: std::path::PathBuf,
    cfg: std::path::PathBuf,
}

impl Setup {
    fn new(response: &str, open: bool) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("mail.log");
        append(&log, &noise(0));
        let cfg = config(dir.path(), &log, response);
        if open {
            chmod(dir.path(), 0o777);
            chmod(&log, 0o644);
            chmod(&cfg, 0o644);
        }
        Setup { dir, log, cfg }
    }

    /// The daemon started in `ns`, its responder running.
    fn start(&self, ns: &Netns) -> Daemon {
        let d = Daemon::start_with(ns.bin(), &self.cfg, self.dir.path());
        assert!(started(&d, 1), "{}", d.logged());
        d
    }
}

/// `n` failures of `ip` for `user`, now.
fn fails(ip: &str, user: &str, n: usize) -> String {
    (0..n).map(|_| fail(ip, user)).collect()
}

/// Runs a command of the binary (in the server namespace) and returns its output.
fn ask(ns: &Netns, cfg: &Path, args: &[&str]) -> std::process::Output {
    let mut c = ns.bin();
    c.args(args).args(["-c", cfg.to_str().unwrap()]);
    c.output().unwrap()
}

/// Sets a path's mode.
fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(
        p,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(m),
    )
    .unwrap()
}

/// The binary as `nobody` with no capability, running `args`.
fn as_nobody(args: &[&str]) -> std::process::Output {
    nobody(args).output().unwrap()
}

/// The binary as `nobody`, without any capability, to be run.
fn nobody(args: &[&str]) -> Command {
    let mut c = isolated(Command::new("setpriv"));
    c.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
    ])
    .arg(env!("CARGO_BIN_EXE_maillogsentinel"))
    .args(args);
    c
}

/// Whether the daemon's `n`th start (its log is appended to) is complete: the line that ends a
/// start comes after the responder set nftables up, joined the fleet and replayed the window.
fn started(d: &Daemon, n: usize) -> bool {
    wait_until(Duration::from_secs(30), || {
        d.logged().matches(" running files=").count() >= n
    })
}

macro_rules! netns_or_skip {
    ($tag:expr) => {
        match Netns::new($tag) {
            Ok(ns) => ns,
            Err(why) => {
                eprintln!("SKIPPED {}: {why}", module_path!());
                return;
            }
        }
    };
}

#[test]
fn an_attacker_is_banned_after_the_threshold_and_an_allowlisted_address_never() {
    let ns = netns_or_skip!("a");
    let t = Setup::new("", false);
    let (dir, log, cfg) = (&t.dir, &t.log, &t.cfg);
    let d = t.start(&ns);
    assert!(ns.connects(ATTACKER));

    // The allowlisted address fails ten times, with a username forged to read like a failure
    // of another address: neither it nor that address is banned.
    let forged = "x warning: unknown[203.0.113.77]: SASL LOGIN authentication failed: y";
    for _ in 0..10 {
        append(log, &fail(FRIEND, forged));
    }
    // Two failures: below the threshold.
    append(log, &(fail(ATTACKER, "a") + &fail(ATTACKER, "b")));
    assert!(wait_until(Duration::from_secs(10), || csv_rows(
        &dir.path().join("out.csv")
    )
    .len()
        == 12));
    std::thread::sleep(Duration::from_millis(300));
    assert!(ns.connects(ATTACKER), "banned before the threshold");
    // The third.
    append(log, &fail(ATTACKER, "c"));
    assert!(
        wait_until(Duration::from_secs(10), || ns
            .set("addr4")
            .contains(ATTACKER)),
        "{}\n{}",
        ns.set("addr4"),
        d.logged()
    );
    assert!(!ns.connects(ATTACKER), "the attacker still connects");
    assert!(ns.connects(FRIEND), "the allowlisted address is locked out");
    let set = ns.set("addr4");
    assert!(
        !set.contains(FRIEND) && !set.contains("203.0.113.77"),
        "{set}"
    );
    assert!(
        d.logged()
            .contains("banned 203.0.113.66/32 for 1h (rule per-address: 3 failures in 10m"),
        "{}",
        d.logged()
    );

    // `bans` lists it, as JSON too.
    let out = ask(&ns, cfg, &["bans", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["target"], "203.0.113.66/32");
    assert_eq!(list[0]["rule"], "per-address");
    assert!(list[0]["remaining_secs"].as_u64().unwrap() > 3500);
    let text = stdout(&ask(&ns, cfg, &["bans"]));
    assert!(
        text.contains("203.0.113.66/32") && text.contains("1 bans running"),
        "{text}"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&ask(&ns, cfg, &["status", "--json"]).stdout).unwrap();
    assert_eq!(status["response"]["active"], 1, "{status}");
    assert_eq!(status["response"]["spared"], 10, "{status}");

    // `unban` gives access back.
    let out = ask(&ns, cfg, &["unban", ATTACKER]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ns.connects(ATTACKER), "still blocked after unban");
    // A ban by hand, for two seconds: the kernel lifts it.
    let out = ask(&ns, cfg, &["ban", ATTACKER, "--for", "2s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!ns.connects(ATTACKER), "the ban by hand does not hold");
    assert!(
        wait_until(Duration::from_secs(6), || ns.connects(ATTACKER)),
        "the ban did not expire"
    );
    // Protected addresses are refused by hand too.
    let out = ask(&ns, cfg, &["ban", FRIEND]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("never banned"), "{}", stderr(&out));
    let out = ask(&ns, cfg, &["ban", "10.1.2.3"]);
    assert!(stderr(&out).contains("private"), "{}", stderr(&out));

    // Forgiveness: two failures for alice, her successful login, then her failures start from
    // zero: the third ban-making failure is x5 (without forgiveness, the first after the login
    // would ban). All in one second: the log's order, not the timestamps, says the login came
    // between.
    let t = now();
    append(
        log,
        &[
            fail_at(&t, SECOND, "alice"),
            fail_at(&t, SECOND, "alice"),
            login_at(&t, SECOND, "alice"),
            fail_at(&t, SECOND, "alice"),
            fail_at(&t, SECOND, "alice"),
            fail_at(&t, SECOND, "x5"),
        ]
        .concat(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || d
            .logged()
            .contains("last from 203.0.113.67")),
        "{}",
        d.logged()
    );
    assert!(ns.set("addr4").contains(SECOND));
    let logged = d.logged();
    assert!(logged.contains("last from 203.0.113.67 as x5)"), "{logged}");
    assert!(!logged.contains("as alice)"), "{logged}");
    assert!(
        logged.contains("203.0.113.67 logged in as alice: its failures no longer count"),
        "{logged}"
    );
    assert_eq!(d.stop(), Some(0));

    // The record has every step.
    let record = std::fs::read_to_string(dir.path().join("state/bans.csv")).unwrap();
    let actions: Vec<&str> = record
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(
        actions,
        ["ban", "unban", "ban", "forgive", "ban"],
        "{record}"
    );
}

#[test]
fn a_restart_keeps_bans_and_counts_and_log_mode_blocks_nothing() {
    let ns = netns_or_skip!("b");
    let t = Setup::new("", false);
    let (dir, log, cfg) = (&t.dir, &t.log, &t.cfg);
    let d = t.start(&ns);
    // One attacker banned, another two failures into its count.
    append(log, &fails(ATTACKER, "a", 3));
    append(log, &fails(SECOND, "a", 2));
    assert!(wait_until(Duration::from_secs(10), || csv_rows(
        &dir.path().join("out.csv")
    )
    .len()
        == 5));
    assert!(wait_until(Duration::from_secs(10), || ns
        .set("addr4")
        .contains(ATTACKER)));
    assert_eq!(d.stop(), Some(0));
    // The kernel keeps the ban while the daemon is stopped.
    assert!(!ns.connects(ATTACKER));
    // Someone flushes the set (a firewall reload), and adds an element nobody recorded.
    assert!(sh(&[
        "ip",
        "netns",
        "exec",
        &ns.server,
        "nft",
        "flush",
        "set",
        "inet",
        "maillogsentinel",
        "addr4"
    ]));
    assert!(sh(&[
        "ip",
        "netns",
        "exec",
        &ns.server,
        "nft",
        "add",
        "element",
        "inet",
        "maillogsentinel",
        "addr4",
        "{ 198.51.100.99 timeout 1h }"
    ]));
    let d = Daemon::start_with(ns.bin(), cfg, dir.path());
    assert!(started(&d, 2), "{}", d.logged());
    // Reconciled: the recorded ban is back, the unknown element gone.
    let set = ns.set("addr4");
    assert!(
        set.contains(ATTACKER) && !set.contains("198.51.100.99"),
        "{set}"
    );
    assert!(!ns.connects(ATTACKER));
    // The second attacker's two failures were not forgotten: one more bans it, and the first
    // is not banned twice.
    append(log, &fail(SECOND, "a"));
    assert!(
        wait_until(Duration::from_secs(10), || ns.set("addr4").contains(SECOND)),
        "{}",
        d.logged()
    );
    assert!(!ns.connects(SECOND));
    assert_eq!(d.stop(), Some(0));
    let record = std::fs::read_to_string(dir.path().join("state/bans.csv")).unwrap();
    assert_eq!(
        record.matches(",ban,203.0.113.66/32,").count(),
        1,
        "{record}"
    );

    // mode = "log": decided and recorded, nothing blocked.
    assert!(sh(&[
        "ip",
        "netns",
        "exec",
        &ns.server,
        "nft",
        "delete",
        "table",
        "inet",
        "maillogsentinel"
    ]));
    let t = Setup::new("mode = \"log\"\n", false);
    let (log, cfg) = (&t.log, &t.cfg);
    let d = t.start(&ns);
    append(log, &fails(ATTACKER, "a", 3));
    assert!(
        wait_until(Duration::from_secs(10), || d
            .logged()
            .contains("would ban (mode = \"log\") 203.0.113.66/32")),
        "{}",
        d.logged()
    );
    assert!(ns.connects(ATTACKER), "mode = \"log\" blocked");
    assert!(
        !sh(&[
            "ip",
            "netns",
            "exec",
            &ns.server,
            "nft",
            "list",
            "table",
            "inet",
            "maillogsentinel"
        ]),
        "log mode made a table"
    );
    let list: serde_json::Value =
        serde_json::from_slice(&ask(&ns, cfg, &["bans", "--json"]).stdout).unwrap();
    assert_eq!(list[0]["mode"], "log");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn the_exec_action_gets_hostile_usernames_only_as_data() {
    // No namespace needed: nftables off, a command instead.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &noise(0));
    let script = dir.path().join("ban.sh");
    let args_file = dir.path().join("args");
    let pwned = dir.path().join("pwned");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done >> {}\n",
            args_file.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = daemon_config(
        dir.path(),
        &[&log],
        &format!(
            "\n[response]\nenabled = true\nnftables = false\nexec = [\"{}\", \"{{ip}}\", \"{{key}}\", \"{{rule}}\", \"{{duration}}\", \"user={{username}}\"]\n[[response.rule]]\nname = \"per-address\"\nkey = \"ip\"\nmax = 2\nwindow = \"10m\"\nban = \"1h\"\n",
            script.display()
        ),
    );
    let d = Daemon::start(&cfg, dir.path());
    assert!(started(&d, 1), "{}", d.logged());
    let hostile = format!("$(touch {});`touch {}`", pwned.display(), pwned.display());
    append(
        &log,
        &(fail(ATTACKER, &hostile) + &fail(ATTACKER, &hostile)),
    );
    assert!(
        wait_until(Duration::from_secs(10), || args_file.exists()),
        "{}",
        d.logged()
    );
    assert!(wait_until(Duration::from_secs(5), || std::fs::read(
        &args_file
    )
    .unwrap()
    .iter()
    .filter(|&&b| b == 0)
    .count()
        == 5));
    let args = std::fs::read(&args_file).unwrap();
    let args: Vec<String> = args
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert_eq!(
        args,
        [
            ATTACKER,
            "203.0.113.66/32",
            "per-address",
            "3600",
            &format!("user={hostile}")
        ]
    );
    assert!(!pwned.exists(), "the username was run as a command");
    assert_eq!(d.stop(), Some(0));
    let record = std::fs::read_to_string(dir.path().join("state/bans.csv")).unwrap();
    assert!(
        record.contains(",exec,203.0.113.66/32,per-address,"),
        "{record}"
    );
}

#[test]
fn a_missing_capability_is_a_clear_error_at_start() {
    // Run as an unprivileged user: nft is refused, and the daemon says what to do.
    if unsafe { libc::geteuid() } != 0 || !sh(&["nft", "--version"]) {
        eprintln!(
            "SKIPPED a_missing_capability_is_a_clear_error_at_start: it needs root (to drop to another user) and nft"
        );
        return;
    }
    let t = Setup::new("", true);
    let cfg = &t.cfg;
    let out = as_nobody(&["run", "-c", cfg.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("CAP_NET_ADMIN") && err.contains("mode = \"log\""),
        "{err}"
    );
    // `check` says so too, before any start.
    let out = as_nobody(&["check", "-c", cfg.to_str().unwrap()]);
    let all = stdout(&out) + &stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("lacks CAP_NET_ADMIN"), "{all}");

    // An `nft` that may (as one given the capability by a wrapper would) while the daemon may
    // not: the daemon's own netlink probe refuses the start, where every ban would fail.
    let bin = t.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("nft"), "#!/bin/sh\nexit 0\n").unwrap();
    chmod(&bin, 0o755);
    chmod(&bin.join("nft"), 0o755);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = nobody(&["run", "-c", cfg.to_str().unwrap()])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("netlink") && err.contains("CAP_NET_ADMIN"),
        "{err}"
    );
}

#[test]
fn with_exactly_the_capability_the_drop_in_grants_the_daemon_bans() {
    // What packaging/response.conf gives the service: another user, no new privileges, and
    // CAP_NET_ADMIN alone, ambient (so that `nft`, its child, has it too).
    let ns = netns_or_skip!("c");
    let t = Setup::new("", true);
    let (dir, log, cfg) = (&t.dir, &t.log, &t.cfg);
    let mut c = isolated(Command::new("ip"));
    c.args([
        "netns",
        "exec",
        &ns.server,
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=-all,+net_admin",
        "--ambient-caps=-all,+net_admin",
        "--bounding-set=-all,+net_admin",
        "--no-new-privs",
        env!("CARGO_BIN_EXE_maillogsentinel"),
    ]);
    let d = Daemon::start_with(c, cfg, dir.path());
    assert!(started(&d, 1), "{}", d.logged());
    append(log, &fails(ATTACKER, "a", 3));
    assert!(
        wait_until(Duration::from_secs(10), || ns
            .set("addr4")
            .contains(ATTACKER)),
        "{}",
        d.logged()
    );
    assert!(!ns.connects(ATTACKER));
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_ban_decided_on_one_server_is_applied_by_the_whole_fleet() {
    // Two mail servers, each in a namespace of its own with its daemon and nftables, sharing
    // one PostgreSQL database (through its Unix socket).
    let Some(pg) = crate::pg_server::PgCluster::start() else {
        eprintln!(
            "SKIPPED a_ban_decided_on_one_server_is_applied_by_the_whole_fleet: no PostgreSQL"
        );
        return;
    };
    let mx1 = netns_or_skip!("d");
    let mx2 = netns_or_skip!("e");
    let db = pg.create_db("fleet");
    let _ = db;
    let url = pg.socket_url("fleet");
    let start = |ns: &Netns, name: &str| {
        let t = Setup::new("share = true\n", false);
        let text = std::fs::read_to_string(&t.cfg).unwrap().replace(
            "[output]\n",
            &format!(
                "[output]\nstore = \"postgres\"\npostgres = \"{url}\"\ninstance = \"{name}\"\n"
            ),
        );
        std::fs::write(&t.cfg, text).unwrap();
        let d = Daemon::start_with(ns.bin(), &t.cfg, t.dir.path());
        assert!(started(&d, 1), "{}", d.logged());
        assert!(
            d.logged().contains("sharing bans with the fleet"),
            "{}",
            d.logged()
        );
        (t, d)
    };
    let (t1, d1) = start(&mx1, "mx1");
    let (_t2, d2) = start(&mx2, "mx2");

    // An attack on mx1: mx2 bans the address too, and says where the ban came from.
    append(&t1.log, &fails(ATTACKER, "a", 3));
    assert!(
        wait_until(Duration::from_secs(10), || mx1
            .set("addr4")
            .contains(ATTACKER)),
        "{}",
        d1.logged()
    );
    let t = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || mx2
            .set("addr4")
            .contains(ATTACKER)),
        "mx2 never applied mx1's ban\n{}\n{}",
        d1.logged(),
        d2.logged()
    );
    eprintln!("mx2 applied mx1's ban {:?} after mx1 did", t.elapsed());
    assert!(!mx2.connects(ATTACKER));
    assert!(
        wait_until(Duration::from_secs(5), || d2
            .logged()
            .contains("bans from the fleet applied (203.0.113.66/32)")),
        "{}",
        d2.logged()
    );
    let rows: i64 = pg
        .client("fleet")
        .query_one("SELECT count(*) FROM bans WHERE instance = 'mx1' AND action = 'ban' AND target = '203.0.113.66/32'", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    // mx2 did not send it back.
    let echoed: i64 = pg
        .client("fleet")
        .query_one("SELECT count(*) FROM bans WHERE instance = 'mx2'", &[])
        .unwrap()
        .get(0);
    assert_eq!(echoed, 0);

    // An unban by hand on mx1 lifts it on mx2.
    let out = ask(&mx1, &t1.cfg, &["unban", ATTACKER]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(Duration::from_secs(15), || !mx2
            .set("addr4")
            .contains(ATTACKER)),
        "{}",
        d2.logged()
    );
    assert!(mx2.connects(ATTACKER));
    assert_eq!(d1.stop(), Some(0));
    assert_eq!(d2.stop(), Some(0));
}

/// Waits until `source` can no longer connect to `server`, or fails saying `why` and the
/// daemon's log.
fn closed_to(ns: &Netns, d: &Daemon, server: &str, source: &str, why: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || !ns.connects_to(server, source)),
        "{source} still connects to {server} {why}: {}",
        d.logged()
    );
}

/// The daemon started again in `ns` (its `n`th start), having logged `says`.
fn restarted(ns: &Netns, cfg: &Path, dir: &Path, n: usize, says: &str) -> Daemon {
    let d = Daemon::start_with(ns.bin(), cfg, dir);
    assert!(started(&d, n), "{}", d.logged());
    assert!(
        d.logged().contains(says),
        "not said: {says}\n{}",
        d.logged()
    );
    d
}

/// Asserts that the server's set `set` holds `element`.
fn assert_in_set(ns: &Netns, set: &str, element: &str) {
    let listed = ns.set(set);
    assert!(listed.contains(element), "{element} not in {set}: {listed}");
}

/// A network ban is one element holding the network's first address, matched by the rule's
/// mask: every address of the network loses the port, addresses outside it keep it. The same
/// for IPv6 by `ipv6_prefix` (/64) and /48. A table of the first layout (interval sets) is
/// replaced at start, and a restart finds every element where the record says.
#[test]
fn networks_are_banned_by_mask_in_both_families_and_a_first_layout_table_is_replaced() {
    let ns = netns_or_skip!("n");
    // Addresses outside the server's own networks (those are never banned): IPv4 from
    // 198.51.100.0/24, IPv6 from two /48s, routed over the veth pair.
    assert!(ns.run_all(&[
        "ip -n {S} route add 198.51.100.0/24 dev {vs}",
        "ip -n {C} addr add 198.51.100.66/32 dev {vc}",
        "ip -n {C} addr add 198.51.100.67/32 dev {vc}",
        "ip -n {C} addr add 198.51.100.68/32 dev {vc}",
        "ip -n {S} addr add 2001:db8:ffff::1/64 dev {vs} nodad",
        "ip -n {S} route add 2001:db8::/32 dev {vs}",
        "ip -n {C} addr add 2001:db8:1:2::66/128 dev {vc} nodad",
        "ip -n {C} addr add 2001:db8:1:2::67/128 dev {vc} nodad",
        "ip -n {C} addr add 2001:db8:1:3::66/128 dev {vc} nodad",
        "ip -n {C} addr add 2001:db8:2::66/128 dev {vc} nodad",
        "ip -n {C} route add 2001:db8:ffff::/64 dev {vc}",
    ]));
    let mut ns = ns;
    let v6 = Command::new("ip")
        .args(["netns", "exec", &ns.server, "python3", "-c"])
        .arg(format!(
            "import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,1)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('2001:db8:ffff::1',{PORT}))\ns.listen(64)\nwhile True:\n  c,_=s.accept(); c.close()\n"
        ))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    ns.more.push(v6);
    const V6: &str = "2001:db8:ffff::1";
    let all = [
        (SERVER, "198.51.100.66"),
        (SERVER, "198.51.100.67"),
        (SERVER, "198.51.100.68"),
        (V6, "2001:db8:1:2::66"),
        (V6, "2001:db8:1:2::67"),
        (V6, "2001:db8:1:3::66"),
        (V6, "2001:db8:2::66"),
    ];
    assert!(
        wait_until(Duration::from_secs(10), || all
            .iter()
            .all(|(s, a)| ns.connects_to(s, a))),
        "the routed addresses do not connect before any ban"
    );
    // The first layout: interval sets, one element nobody recorded.
    let first = "add table inet maillogsentinel\n\
        add set inet maillogsentinel addr4 { type ipv4_addr; flags timeout; }\n\
        add set inet maillogsentinel net4 { type ipv4_addr; flags interval, timeout; }\n\
        add set inet maillogsentinel addr6 { type ipv6_addr; flags interval, timeout; }\n\
        add set inet maillogsentinel net6 { type ipv6_addr; flags interval, timeout; }\n\
        add element inet maillogsentinel net4 { 192.0.2.0/24 timeout 1h }\n";
    assert!(ns.nft(first));

    // Per address at 3 (the config's rule), per network at 4.
    let t = Setup::new(
        "[[response.rule]]\nname = \"per-network\"\nkey = \"net\"\nmax = 4\nwindow = \"10m\"\nban = \"1h\"\n",
        false,
    );
    let (dir, log, cfg) = (&t.dir, &t.log, &t.cfg);
    let d = t.start(&ns);
    assert!(d.logged().contains("first layout"), "{}", d.logged());
    let net4 = ns.set("net4");
    assert!(
        net4.contains("flags timeout") && !net4.contains("interval") && !net4.contains("192.0.2.0"),
        "{net4}"
    );

    // IPv4: .66 three times (its address), then .67 once (the fourth of the network).
    append(log, &fails("198.51.100.66", "a", 3));
    closed_to(&ns, &d, SERVER, "198.51.100.66", "");
    assert!(ns.connects_to(SERVER, "198.51.100.67"));
    append(log, &fail("198.51.100.67", "a"));
    closed_to(
        &ns,
        &d,
        SERVER,
        "198.51.100.68",
        "the network's ban does not close it to an address that never failed",
    );
    assert_in_set(&ns, "net4", "198.51.100.0");
    assert!(ns.connects(ATTACKER) && ns.connects(FRIEND));

    // IPv6: one address of a /64 three times: the whole /64, not its neighbour /64.
    append(log, &fails("2001:db8:1:2::66", "a", 3));
    closed_to(&ns, &d, V6, "2001:db8:1:2::67", "");
    assert!(ns.connects_to(V6, "2001:db8:1:3::66"));
    assert_in_set(&ns, "addr6", "2001:db8:1:2::");
    // The fourth failure in 2001:db8:1::/48: the /48, not another /48.
    append(log, &fail("2001:db8:1:3::66", "a"));
    closed_to(&ns, &d, V6, "2001:db8:1:3::66", "");
    assert_in_set(&ns, "net6", "2001:db8:1::");
    assert!(ns.connects_to(V6, "2001:db8:2::66"));
    assert_eq!(csv_rows(&dir.path().join("out.csv")).len(), 8);

    // A restart finds the four bans where the record says: nothing put back, nothing removed.
    assert_eq!(d.stop(), Some(0));
    let d = restarted(
        &ns,
        cfg,
        dir.path(),
        2,
        "4 bans running (0 put back into nftables, 0 elements nobody recorded removed)",
    );
    assert!(!ns.connects_to(SERVER, "198.51.100.68"));

    // The first layout again, now with bans recorded: replaced, and the four put back.
    assert_eq!(d.stop(), Some(0));
    assert!(ns.nft(&format!("delete table inet maillogsentinel\n{first}")));
    let d = restarted(
        &ns,
        cfg,
        dir.path(),
        3,
        "4 bans running (4 put back into nftables, 0 elements nobody recorded removed)",
    );
    assert!(!ns.connects_to(SERVER, "198.51.100.68"));
    assert!(!ns.connects_to(V6, "2001:db8:1:2::67"));
    assert!(ns.connects_to(V6, "2001:db8:2::66"));
    assert!(ns.connects(ATTACKER));

    // `unban` lifts a network's ban over netlink.
    let out = ask(&ns, cfg, &["unban", "198.51.100.0/24"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !ns.set("net4").contains("198.51.100.0"),
        "{}",
        ns.set("net4")
    );
    assert!(ns.connects_to(SERVER, "198.51.100.68"));
    assert_eq!(d.stop(), Some(0));

    // (The unban of the /24 lifted the address ban inside it too: two bans run, both IPv6.)
    // IPv6 grouped by /56 from now on: the /64 ban is neither widened nor narrowed, but said,
    // and its element (which starts no /56) is removed; the /48 stays.
    let text = std::fs::read_to_string(cfg).unwrap();
    std::fs::write(
        cfg,
        text.replacen("[response]\n", "[response]\nipv6_prefix = 56\n", 1),
    )
    .unwrap();
    let d = restarted(
        &ns,
        cfg,
        dir.path(),
        4,
        "the ban of 2001:db8:1:2::/64 (until",
    );
    assert!(
        d.logged().contains(
            "2 bans running (0 put back into nftables, 1 elements nobody recorded removed)"
        ),
        "{}",
        d.logged()
    );
    // The /64's element is gone; what addr6 holds now is the rules' own decision over the
    // window's failures counted again by /56 (four in 2001:db8:1::/56, the max is three),
    // logged and recorded as a ban of its own, not the /64's put back wider.
    let addr6 = ns.set("addr6");
    assert!(!addr6.contains("2001:db8:1:2::"), "{addr6}");
    assert!(
        d.logged().contains("banned 2001:db8:1::/56 for 1h"),
        "{addr6}\n{}",
        d.logged()
    );
    assert_in_set(&ns, "net6", "2001:db8:1::");
    assert!(!ns.connects_to(V6, "2001:db8:1:2::67"));
    assert_eq!(d.stop(), Some(0));
}

/// Debian's nftables.conf begins with `flush ruleset`: a firewall reload takes our table away.
/// The next ban sets it up again and puts the running bans back.
#[test]
fn after_a_firewall_reload_the_next_ban_sets_the_table_up_again() {
    let ns = netns_or_skip!("f");
    let t = Setup::new("", false);
    let d = t.start(&ns);
    append(&t.log, &fails(ATTACKER, "a", 3));
    assert!(wait_until(Duration::from_secs(10), || !ns.connects(ATTACKER)));
    assert!(ns.nft("flush ruleset\n"));
    assert!(ns.connects(ATTACKER), "the flush left the ban in place");
    append(&t.log, &fails(SECOND, "a", 3));
    closed_to(&ns, &d, SERVER, SECOND, "after the reload");
    assert!(!ns.connects(ATTACKER), "{}", d.logged());
    assert!(ns.connects(FRIEND));
    assert!(d.logged().contains("setting it up again"), "{}", d.logged());
    assert_eq!(d.stop(), Some(0));
}
