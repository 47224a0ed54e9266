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
