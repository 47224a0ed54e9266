//! `scan` on bad input: garbage, NUL bytes, invalid UTF-8, huge lines, damaged and unreadable
//! files. Nothing already collected is lost, and errors name the file.

use std::io::Write;

use flate2::{Compression, write::GzEncoder};

use crate::support::*;

const FAIL: &str = "Nov 22 08:01:04 mx postfix/smtpd[1]: warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=";

fn failure_line(user: &str) -> String {
    format!("{FAIL}{user}\n")
}

fn rows(csv: &str) -> Vec<&str> {
    csv.strip_prefix(HEADER)
        .expect("header")
        .split_terminator("\r\n")
        .collect()
}

#[test]
fn garbage_nul_bytes_and_invalid_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("garbage.log");
    let mut data = Vec::new();
    data.extend_from_slice(failure_line("before").as_bytes());
    data.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    data.extend_from_slice(b"\n\0\0\0authentication failed\0\0\n");
    data.extend_from_slice(FAIL.as_bytes());
    data.extend_from_slice(b"bad\xff\xfeutf8\n");
    data.extend_from_slice(failure_line("after").as_bytes());
    std::fs::write(&log, data).unwrap();
    set_mtime(&log, fixture_mtime());
    let o = run(&["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let users: Vec<&str> = rows(&out)
        .iter()
        .map(|r| r.split(',').nth(4).unwrap())
        .collect();
    assert_eq!(users, ["before", "bad\u{fffd}\u{fffd}utf8", "after"]);
}

#[test]
fn a_10_mb_line_without_newline_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("huge.log");
    let mut f = std::fs::File::create(&log).unwrap();
    f.write_all(failure_line("before").as_bytes()).unwrap();
    // A huge line that even contains the needle, then a real line, then a huge unterminated one.
    let mut huge = FAIL.as_bytes().to_vec();
    huge.resize(10 * 1024 * 1024, b'x');
    f.write_all(&huge).unwrap();
    f.write_all(b"\n").unwrap();
    f.write_all(failure_line("after").as_bytes()).unwrap();
    f.write_all(&huge).unwrap();
    drop(f);
    set_mtime(&log, fixture_mtime());
    let o = run(&["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(rows(&out).len(), 2, "{out}");
    assert!(stderr(&o).contains("2 too long"), "{}", stderr(&o));
}

#[test]
fn truncated_gzip_keeps_the_rows_before_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    // Large enough to span many read blocks.
    let mut text = String::new();
    for i in 0..60_000 {
        if i % 50 == 0 {
            text.push_str(&failure_line(&format!("user{i}")));
        } else {
            text.push_str(&format!(
                "Nov 22 08:01:04 mx postfix/qmgr[9]: {i:010X}: removed\n"
            ));
        }
    }
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    let full = dir.path().join("full.log.gz");
    let cut = dir.path().join("cut.log.gz");
    std::fs::write(&full, &gz).unwrap();
    std::fs::write(&cut, &gz[..gz.len() * 2 / 3]).unwrap();
    for p in [&full, &cut] {
        set_mtime(p, fixture_mtime());
    }

    let all = run(&["scan", "--no-enrich", "-o", "-", full.to_str().unwrap()]);
    assert!(all.status.success());
    let all = stdout(&all);
    assert_eq!(rows(&all).len(), 1200);

    let o = run(&["scan", "--no-enrich", "-o", "-", cut.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(cut.to_str().unwrap()), "{err}");
    assert!(err.contains("rows before it were kept"), "{err}");
    let out = stdout(&o);
    let kept = rows(&out);
    assert!(kept.len() > 100, "only {} rows kept", kept.len());
    assert!(kept.len() < 1200);
    assert_eq!(
        kept[..],
        rows(&all)[..kept.len()],
        "kept rows are the first rows"
    );
}

#[test]
fn unreadable_inputs_do_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let log = fixture_copy(dir.path(), "mail.log");
    let missing = dir.path().join("missing.log");
    let o = run(&[
        "scan",
        "--no-enrich",
        "-o",
        "-",
        missing.to_str().unwrap(),
        dir.path().to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    assert!(
        err.contains(&format!("{}: is a directory", dir.path().display())),
        "{err}"
    );
    assert!(err.contains("2 of 3 inputs"), "{err}");
    assert_eq!(
        stdout(&o),
        std::fs::read_to_string(data("mail.csv")).unwrap()
    );
}

#[test]
fn empty_file_gives_only_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("empty.log");
    std::fs::write(&log, "").unwrap();
    let o = run(&["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), HEADER);
}

#[test]
fn a_file_without_read_permission_is_named_and_the_others_are_read() {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = fixture_copy(dir.path(), "mail.log");
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
    let secret = dir.path().join("secret.log");
    std::fs::write(&secret, failure_line("hidden")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let args = [
        "scan",
        "--no-enrich",
        "-o",
        "-",
        secret.to_str().unwrap(),
        log.to_str().unwrap(),
    ];
    // Root reads anything: drop to `nobody` for this run, as a postmaster's unprivileged
    // account would be.
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    let o = if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        let mut cmd = isolated(std::process::Command::new("setpriv"));
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_maillogsentinel"));
        run_in(cmd, &args)
    } else {
        run(&args)
    };
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}: Permission denied", secret.display())),
        "{err}"
    );
    assert_eq!(
        stdout(&o),
        std::fs::read_to_string(data("mail.csv")).unwrap()
    );
}
