//! `check`, `--version`, `--help` and configuration errors.

use crate::support::*;

#[test]
fn check_prints_effective_settings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path());
    let o = run(&["check", "-c", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
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
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let o = run(&["check", "-c", example]);
    assert!(o.status.success(), "{}", stderr(&o));
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
                "[sources]\nfiles = [\"{}\"]\njournal_path = \"{}\"\n{extra}\n",
                log.display(),
                journal.display()
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
