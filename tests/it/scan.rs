//! `scan` on fixture files: the CSV is compared byte for byte with the expected one.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use crate::support::*;

fn expected(name: &str) -> String {
    std::fs::read_to_string(data(name)).unwrap()
}

#[test]
fn plain_file_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let log = fixture_copy(dir.path(), "mail.log");
    let o = run(&["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected("mail.csv"));
    // The auth-backend failure is not a row but is warned about, with file and line.
    let err = stderr(&o);
    assert!(
        err.contains("SASL backend failed") && err.contains("line=19"),
        "{err}"
    );
    assert!(
        err.contains("13 failed logins, 1 auth-backend failures"),
        "{err}"
    );
}

#[test]
fn gzip_file_gives_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let gz = fixture_copy(dir.path(), "mail.log.gz");
    let o = run(&["scan", "--no-enrich", "-o", "-", gz.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected("mail.csv"));
}

#[test]
fn rfc3339_and_journal_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let log = fixture_copy(dir.path(), "iso.log");
    let o = run(&["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected("iso.csv"));
}

#[test]
fn year_is_inferred_across_new_year() {
    let dir = tempfile::tempdir().unwrap();
    let log = fixture_copy(dir.path(), "newyear.log");
    // The file was last written on 2 January 2027 (09:00 UTC).
    set_mtime(
        &log,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_880_400),
    );
    let o = run(&["scan", "--no-enrich", "-o", "-", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected("newyear.csv"));
}

#[test]
fn stdin_dash() {
    let mut child = bin()
        .args(["scan", "--no-enrich", "-o", "-", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // No file, so no mtime: the year comes from the clock; use a timestamp with a year.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(data("iso.log")).unwrap())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), expected("iso.csv"));
}

#[test]
fn files_are_read_in_the_order_given() {
    let dir = tempfile::tempdir().unwrap();
    let a = fixture_copy(dir.path(), "iso.log");
    let b = fixture_copy(dir.path(), "mail.log.gz");
    let o = run(&[
        "scan",
        "--no-enrich",
        "-o",
        "-",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mail = expected("mail.csv");
    let want = expected("iso.csv") + mail.strip_prefix(HEADER).unwrap();
    assert_eq!(stdout(&o), want);
}

#[test]
fn output_file_is_appended_with_one_header() {
    let dir = tempfile::tempdir().unwrap();
    let log = fixture_copy(dir.path(), "mail.log");
    let out = dir.path().join("out.csv");
    for _ in 0..2 {
        let o = run(&[
            "scan",
            "--no-enrich",
            "-o",
            out.to_str().unwrap(),
            log.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
    let rows = expected("mail.csv");
    let want = rows.clone() + rows.strip_prefix(HEADER).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), want);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o007, 0, "CSV must not be world-readable: {mode:o}");
}

#[test]
fn without_output_rows_go_to_the_configured_csv() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_in(dir.path());
    let log = fixture_copy(dir.path(), "mail.log");
    let o = run(&[
        "scan",
        "--no-enrich",
        "-c",
        cfg.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = dir.path().join("out/intrusions.csv");
    assert_eq!(std::fs::read_to_string(csv).unwrap(), expected("mail.csv"));
}

#[test]
fn a_foreign_output_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let log = fixture_copy(dir.path(), "mail.log");
    let out = dir.path().join("other.csv");
    std::fs::write(&out, "a,b\n1,2\n").unwrap();
    let o = run(&[
        "scan",
        "--no-enrich",
        "-o",
        out.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(out.to_str().unwrap()), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "a,b\n1,2\n");
}
