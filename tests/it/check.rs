//! `check`, `--version`, `--help` and configuration errors.

use crate::support::*;

#[test]
fn check_prints_effective_settings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path());
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(NO_ENRICH);
    std::fs::write(&cfg, text).unwrap();
    append(&dir.path().join("mail.log"), "");
    let o = run(&["check", "-c", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("# the host is ready"), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("configuration OK: {}", cfg.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "csv = \"{}/out/intrusions.csv\"",
            dir.path().display()
        )),
        "{out}"
    );
    // Defaults the file did not state are shown too.
    assert!(out.contains("max_line_bytes = 65536"), "{out}");
}

#[test]
fn check_example_config() {
    // The example is valid (exit 0 or 1: whether this host has its /var/log/mail.log and
    // GeoIP databases is the host's business, and is said, never exit 2).
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let o = run(&["check", "-c", example]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    assert!(stdout(&o).contains("# configuration OK"), "{}", stdout(&o));
}

#[test]
fn invalid_config_exits_2_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[sources]\nfiles = [\"/var/log/mail.log\"]\n\nmax_line_bytes = 12\n",
    )
    .unwrap();
    for args in [
        vec!["check", "-c"],
        vec!["scan", "--no-enrich", "-o", "-", "/dev/null", "-c"],
    ] {
        let mut args = args.clone();
        args.push(cfg.to_str().unwrap());
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains(cfg.to_str().unwrap()), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("max_line_bytes"), "{err}");
    }
    std::fs::write(&cfg, "[output]\ncsv = \"/x\"\ncolour = true\n").unwrap();
    let o = run(&["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("line 3") && stderr(&o).contains("colour"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn named_config_must_exist() {
    let o = run(&["check", "-c", "/nonexistent/config.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/config.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn version_and_help() {
    let o = run(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o).trim(),
        format!("maillogsentinel {}", env!("CARGO_PKG_VERSION"))
    );
    for args in [
        vec!["--help"],
        vec!["scan", "--help"],
        vec!["check", "--help"],
        vec!["help", "scan"],
    ] {
        let o = run(&args);
        assert!(o.status.success(), "{args:?}");
        assert!(
            stdout(&o).contains("Usage: maillogsentinel"),
            "{args:?}: {}",
            stdout(&o)
        );
    }
    assert!(stdout(&run(&["scan", "--help"])).contains("--no-enrich"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec![],
        vec!["scan"],
        vec!["frobnicate"],
        vec!["scan", "--bogus", "x"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn check_says_which_source_a_start_would_read_and_whether_the_journal_is_readable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // Readable by `nobody` below (a temporary directory is 0700).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (log, journal) = (dir.path().join("mail.log"), dir.path().join("journal"));
    std::fs::create_dir(&journal).unwrap();
    let cfg = dir.path().join("c.toml");
    let write = |extra: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[sources]\nfiles = [\"{}\"]\njournal_path = \"{}\"\nstate_dir = \"{d}/state\"\n{extra}\n[output]\ncsv = \"{d}/out.csv\"\n{NO_ENRICH}",
                log.display(),
                journal.display(),
                d = dir.path().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    };
    let check = || run(&["check", "-c", cfg.to_str().unwrap()]);
    write("");
    let o = check();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "a start now would read the journal in {}: none of the configured log files exists",
            journal.display()
        )) && out.contains("is readable by this user"),
        "{out}"
    );
    std::fs::write(&log, "").unwrap();
    let out = stdout(&check());
    assert!(
        out.contains("a start now would read the log files: the configured log file exists"),
        "{out}"
    );
    write("journal = true");
    let out = stdout(&check());
    assert!(
        out.contains(&format!(
            "would read the log files and the journal in {}",
            journal.display()
        )),
        "{out}"
    );

    // A journal the user cannot read is named, with what to do, and check fails.
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("skipped the unreadable-journal part: it needs root to drop to another user");
        return;
    }
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = isolated(std::process::Command::new("setpriv"));
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_maillogsentinel"));
    let o = run_in(cmd, &["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!(
            "the journal in {} cannot be read",
            journal.display()
        )),
        "{}",
        stdout(&o)
    );
}

#[test]
fn check_reports_every_problem_with_the_host_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let cfg = dir.path().join("c.toml");
    // Each line a problem: a log that is not there, a state directory that cannot be made
    // (nothing can be created in /proc), a PostgreSQL store nobody listens for, a GeoIP
    // database never downloaded, a DNS server that does not answer, an SMTP server refusing.
    std::fs::write(
        &cfg,
        format!(
            "[sources]\nfiles = [\"{d}/mail.log\"]\njournal = false\nstate_dir = \"/proc/maillogsentinel-check\"\n\
             [output]\nstore = \"postgres\"\npostgres = \"postgres://u@127.0.0.1:1/db\"\n\
             [enrich]\ncountry_db = \"\"\nasn_db = \"{d}/asn.mmdb\"\ndns_servers = [\"127.0.0.1:1\"]\ndns_timeout = \"500ms\"\n\
             [report]\nto = [\"postmaster@example.org\"]\n[report.smtp]\nhost = \"127.0.0.1\"\nport = 1\nsecurity = \"none\"\n"
        ),
    )
    .unwrap();
    let o = run(&["check", "--smtp", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    let problems: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("# PROBLEM: "))
        .collect();
    for want in [
        "mail.log does not exist",
        "the state directory /proc/maillogsentinel-check does not exist and cannot be created",
        "cannot connect",
        "asn.mmdb",
        "geoip update",
        "the DNS servers (127.0.0.1:1)",
        "the SMTP server 127.0.0.1:1",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "{want} in\n{out}"
        );
    }
    assert_eq!(problems.len(), 6, "{out}");
    assert!(
        out.contains("# ok: the SMTP server 127.0.0.1 resolves"),
        "{out}"
    );
    assert!(out.contains("6 problem(s) with the host"), "{out}");
    // The same on standard error, for whoever runs it by hand.
    assert!(
        stderr(&o).contains("does not exist and cannot be created"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_as_the_service_user_says_what_it_cannot_read() {
    use std::os::unix::fs::PermissionsExt;
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("SKIPPED: check --user needs root (to drop to another user)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &attack("x"));
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = config_in(dir.path());
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(NO_ENRICH);
    std::fs::write(&cfg, text).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Root can: all good.
    let o = run(&["check", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // nobody cannot read the log nor create the state directory (the temporary directory is
    // root's): both said, with what to do.
    let o = run(&["check", "--user", "nobody", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("mail.log cannot be read by this user") && out.contains("adm"),
        "{out}"
    );
    assert!(out.contains("cannot be created in"), "{out}");
}

#[test]
fn pre_start_check_warns_about_the_host_and_fails_only_on_an_invalid_configuration() {
    // What the unit's ExecStartPre runs: a missing log is said (the daemon waits for it), an
    // invalid configuration keeps the daemon from starting.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path());
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(NO_ENRICH);
    std::fs::write(&cfg, text).unwrap();
    let o = run(&["check", "--pre-start", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "", "only problems are said, on stderr");
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}/mail.log does not exist", dir.path().display())),
        "{err}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[sources]\nmax_line_bytes = 12\n").unwrap();
    let o = run(&["check", "--pre-start", "-c", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("max_line_bytes"), "{}", stderr(&o));
}

#[test]
fn man_pages_and_completions_are_generated_from_the_command_line_definition() {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man");
    let o = run(&["generate", "man", man.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(man.join("maillogsentinel.1")).unwrap();
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH FILES",
        ".SH SIGNALS",
        ".SH \"EXIT STATUS\"",
    ] {
        assert!(
            page.contains(section),
            "no {section} in maillogsentinel(1):\n{page}"
        );
    }
    // One page per subcommand, with its options; the hidden `generate` has none.
    let scan = std::fs::read_to_string(man.join("maillogsentinel-scan.1")).unwrap();
    assert!(scan.contains("no\\-enrich"), "{scan}");
    assert!(man.join("maillogsentinel-geoip-update.1").exists());
    assert!(!man.join("maillogsentinel-generate.1").exists());
    for (what, expect) in [
        ("complete-bash", "complete -F _maillogsentinel"),
        ("complete-zsh", "#compdef maillogsentinel"),
        ("complete-fish", "complete -c maillogsentinel"),
    ] {
        let o = run(&["generate", what]);
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        let text = stdout(&o);
        assert!(text.contains(expect), "{what}:\n{text}");
        assert!(
            text.contains("report"),
            "{what} does not complete subcommands"
        );
    }
}
