//! `geoip update` against a real HTTP server on loopback: success, fallback to last month,
//! 404, truncated download, corrupt file. On every failure the old database is kept as it was.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{Datelike, Months, Utc};
use flate2::{Compression, write::GzEncoder};

use crate::http_server::{HttpServer, Reply};
use crate::mmdb;
use crate::support::*;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn month_path(back: u32) -> String {
    let t = Utc::now().checked_sub_months(Months::new(back)).unwrap();
    format!("/db-{:04}-{:02}.mmdb.gz", t.year(), t.month())
}

/// A fresh database (ASNs shifted by `shift`) as served bytes.
fn db_bytes(dir: &Path, shift: u32) -> Vec<u8> {
    let p = dir.join(format!("served-{shift}.mmdb"));
    mmdb::write_ipinfo(&p, shift);
    std::fs::read(p).unwrap()
}

struct Setup {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    db: PathBuf,
    old: Vec<u8>,
}

fn setup(server: &HttpServer) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("geo/ipinfo.mmdb");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    mmdb::write_ipinfo(&db, 0);
    let old = std::fs::read(&db).unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[enrich]\nreverse_dns = false\ncountry_db = \"{db}\"\nasn_db = \"{db}\"\ncountry_db_url = \"http://{a}/db-{{year}}-{{month}}.mmdb.gz\"\nasn_db_url = \"http://{a}/db-{{year}}-{{month}}.mmdb.gz\"\n",
            db = db.display(),
            a = server.addr
        ),
    )
    .unwrap();
    Setup { dir, cfg, db, old }
}

fn asn_of(cfg: &Path) -> String {
    let o = run(&["lookup", "-c", cfg.to_str().unwrap(), "192.0.2.1"]);
    let out = stdout(&o);
    out.lines()
        .find(|l| l.contains("AS:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("geo"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "ipinfo.mmdb")
        .collect()
}

#[test]
fn update_replaces_the_database_and_fetches_one_shared_file_once() {
    let tmp = tempfile::tempdir().unwrap();
    let routes = HashMap::from([(month_path(0), Reply::ok(gz(&db_bytes(tmp.path(), 1000))))]);
    let server = HttpServer::start(routes);
    let s = setup(&server);
    assert_eq!(asn_of(&s.cfg), "AS:          AS64500 Example Networks SAS");
    let o = run(&["geoip", "update", "-c", s.cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("updated"), "{}", stdout(&o));
    assert_eq!(asn_of(&s.cfg), "AS:          AS65500 Example Networks SAS");
    assert_eq!(
        server.requests.lock().unwrap().len(),
        1,
        "one file for both keys: one download"
    );
    assert!(
        leftovers(s.dir.path()).is_empty(),
        "{:?}",
        leftovers(s.dir.path())
    );
}

#[test]
fn last_month_is_fetched_when_this_month_is_not_out() {
    let tmp = tempfile::tempdir().unwrap();
    let routes = HashMap::from([(month_path(1), Reply::ok(gz(&db_bytes(tmp.path(), 2000))))]);
    let server = HttpServer::start(routes);
    let s = setup(&server);
    let o = run(&["geoip", "update", "-c", s.cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(asn_of(&s.cfg), "AS:          AS66500 Example Networks SAS");
    assert_eq!(
        *server.requests.lock().unwrap(),
        vec![month_path(0), month_path(1)]
    );
}

#[test]
fn failures_keep_the_old_database() {
    let tmp = tempfile::tempdir().unwrap();
    let good = gz(&db_bytes(tmp.path(), 3000));
    let cases: Vec<(&str, HashMap<String, Reply>, &str)> = vec![
        ("404", HashMap::new(), "HTTP 404"),
        (
            "truncated",
            HashMap::from([(
                month_path(0),
                Reply::truncated(good.clone(), good.len() / 2),
            )]),
            "transfer interrupted",
        ),
        (
            "corrupt",
            HashMap::from([(
                month_path(0),
                Reply::ok(gz(b"garbage, not a MaxMind DB file at all")),
            )]),
            "did not give a usable database",
        ),
        (
            "html error page",
            HashMap::from([(
                month_path(0),
                Reply {
                    status: 500,
                    body: b"<html>oops</html>".to_vec(),
                    announced: None,
                },
            )]),
            "HTTP status 500",
        ),
    ];
    for (name, routes, message) in cases {
        let server = HttpServer::start(routes);
        let s = setup(&server);
        let o = run(&["geoip", "update", "-c", s.cfg.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(message), "{name}: {err}");
        assert!(err.contains("old files are kept"), "{name}: {err}");
        assert_eq!(
            std::fs::read(&s.db).unwrap(),
            s.old,
            "{name}: the old database is untouched"
        );
        assert!(
            leftovers(s.dir.path()).is_empty(),
            "{name}: {:?}",
            leftovers(s.dir.path())
        );
    }
}
