//! The HTML report in a real browser: Debian's headless Chromium, driven over WebDriver
//! (Debian's chromium-driver, and fantoccini as the client). A day with spoofed reverse DNS,
//! long host names and long usernames, shown as the file `report --format html` writes and
//! as the mail's HTML part with its chart resolved the way a mail client resolves `cid:`,
//! at phone width (390 px, with a phone's metrics emulated, so the viewport meta is what
//! decides the layout width) and at 1200 px. Each time: no horizontal scrolling (the
//! document's scroll width is the viewport's), the chart loaded at its natural size and no
//! wider than the screen, the verdict on the first screen; also with images blocked.
//! Screenshots go to target/report-screenshots/ for a person to look at.
//!
//! Without chromium and chromedriver the test says it skipped (and fails when
//! `MLS_BROWSER_MUST_RUN=1`, as in `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use serde_json::json;

use crate::report_day;
use crate::smtp_server::{SmtpServer, free_port};
use crate::support::*;

/// chromedriver on a port of its own; stopped when dropped.
struct Driver {
    port: u16,
    child: Child,
}

impl Driver {
    fn start(chromedriver: &Path) -> Driver {
        for _ in 0..10 {
            let port = free_port();
            let mut child = Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts");
            let up = wait_until(Duration::from_secs(15), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if up && child.try_wait().ok().flatten().is_none() {
                return Driver { port, child };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("chromedriver did not listen");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromium and chromedriver, or why the test cannot run.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let find = |names: &[&str]| {
        names
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .or_else(|| {
                let path = std::env::var_os("PATH")?;
                std::env::split_paths(&path)
                    .flat_map(|d| names.iter().map(move |n| d.join(n)))
                    .find(|p| p.exists())
            })
    };
    let chromium = find(&["/usr/bin/chromium", "chromium", "chromium-browser"])
        .ok_or("no chromium (Debian: apt-get install chromium chromium-driver)")?;
    let driver = find(&["/usr/bin/chromedriver", "chromedriver"])
        .ok_or("no chromedriver (Debian: apt-get install chromium-driver)")?;
    Ok((chromium, driver))
}

/// How the page is looked at.
#[derive(Clone, Copy)]
struct View {
    /// Viewport width, CSS pixels.
    width: u32,
    /// Viewport height.
    height: u32,
    /// A phone: its metrics emulated (device pixel ratio 3, the viewport meta honoured).
    phone: bool,
    /// Images blocked, as many mail clients start.
    no_images: bool,
}

impl View {
    fn name(&self) -> String {
        format!(
            "{}{}",
            self.width,
            if self.no_images { "-no-images" } else { "" }
        )
    }
}

/// What the page measures of itself.
const MEASURE: &str = r#"
const d = document.documentElement;
const img = document.getElementById('chart');
const verdict = document.getElementById('verdict');
const v = verdict.getBoundingClientRect();
let widest = null;
for (const e of document.body.querySelectorAll('*')) {
  const r = e.getBoundingClientRect();
  if (widest === null || r.right > widest.right) widest = {tag: e.tagName, right: r.right, text: (e.textContent || '').slice(0, 60)};
}
return {
  scrollWidth: d.scrollWidth, clientWidth: d.clientWidth, innerWidth: window.innerWidth,
  innerHeight: window.innerHeight,
  img: img && {complete: img.complete, naturalWidth: img.naturalWidth,
               naturalHeight: img.naturalHeight, width: img.getBoundingClientRect().width,
               right: img.getBoundingClientRect().right, alt: img.alt},
  verdictTop: v.top, verdictBottom: v.bottom, verdict: verdict.textContent,
  widest: widest,
};
"#;

/// Opens `url` in a fresh browser as `view` says; returns what the page measured of itself
/// and a screenshot of the first screen.
async fn look(
    driver: &Driver,
    chromium: &Path,
    profile: &Path,
    url: &str,
    view: View,
) -> (serde_json::Value, Vec<u8>) {
    let mut args = vec![
        "--headless=new".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--hide-scrollbars".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let mut options = json!({ "binary": chromium });
    if view.phone {
        options["mobileEmulation"] = json!({
            "deviceMetrics": { "width": view.width, "height": view.height, "pixelRatio": 3.0,
                               "mobile": true, "touch": true }
        });
    } else {
        args.push(format!("--window-size={},{}", view.width, view.height));
    }
    if view.no_images {
        options["prefs"] = json!({ "profile.managed_default_content_settings.images": 2 });
    }
    options["args"] = json!(args);
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    let client =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .expect("a WebDriver session");
    client.goto(url).await.expect("the page opens");
    let measured = client
        .execute(MEASURE, vec![])
        .await
        .expect("the page measures");
    let shot = client.screenshot().await.expect("a screenshot");
    client.close().await.expect("the session ends");
    (measured, shot)
}

/// The report's HTML the way the mail carries it, its `cid:chart` resolved to the inline part
/// as a mail client does.
fn mailed_html(smtp: &SmtpServer) -> String {
    let raw = smtp.messages().pop().expect("a mail");
    let m = MessageParser::default().parse(&raw).unwrap();
    let html = m.body_html(0).unwrap().into_owned();
    let chart = m
        .attachments()
        .find(|p| p.content_id() == Some("chart"))
        .expect("the inline chart");
    use base64::Engine as _;
    let uri = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(chart.contents())
    );
    assert!(html.contains("src=\"cid:chart\""), "{html}");
    html.replace("src=\"cid:chart\"", &format!("src=\"{uri}\""))
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("report-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "current_thread")]
async fn the_html_report_reads_on_a_phone_and_a_desktop_in_chromium() {
    let (chromium, chromedriver) = match browser() {
        Ok(b) => b,
        Err(why) => {
            assert!(
                std::env::var_os("MLS_BROWSER_MUST_RUN").is_none(),
                "MLS_BROWSER_MUST_RUN is set but: {why}"
            );
            eprintln!("SKIPPED the_html_report_reads_on_a_phone_and_a_desktop_in_chromium: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(dir.path());
    let cfg = report_day::setup(dir.path(), smtp.port);
    let c = cfg.to_str().unwrap();
    let window = ["--from", report_day::FROM, "--to", report_day::TO];
    // The file `--format html` writes, and the mail.
    let o = run(&[&["report", "-c", c, "--format", "html"][..], &window].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let file = dir.path().join("report.html");
    std::fs::write(&file, stdout(&o)).unwrap();
    assert!(!stdout(&o).contains("cid:"), "the file stands alone");
    let o = run(&[&["report", "-c", c, "--send"][..], &window].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(wait_until(Duration::from_secs(10), || smtp
        .messages()
        .len()
        == 1));
    let mail = dir.path().join("mail.html");
    std::fs::write(&mail, mailed_html(&smtp)).unwrap();
    let o = run(&[&["report", "-c", c, "--format", "json"][..], &window].concat());
    let verdict = serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()["verdict"]
        .as_str()
        .unwrap()
        .to_string();

    let driver = Driver::start(&chromedriver);
    let out = screenshots();
    let views = [
        View {
            width: 390,
            height: 844,
            phone: true,
            no_images: false,
        },
        View {
            width: 1200,
            height: 900,
            phone: false,
            no_images: false,
        },
        View {
            width: 390,
            height: 844,
            phone: true,
            no_images: true,
        },
    ];
    for (what, page) in [("file", &file), ("mail", &mail)] {
        for view in views {
            let profile = tempfile::tempdir().unwrap();
            let url = format!("file://{}", page.display());
            let (m, shot) = look(&driver, &chromium, profile.path(), &url, view).await;
            let name = format!("{what}-{}", view.name());
            std::fs::write(out.join(format!("{name}.png")), &shot).unwrap();
            let n = |k: &str| m[k].as_f64().unwrap_or(f64::NAN);
            // The width we meant to test (the viewport meta makes a phone lay out at its
            // own width, not at 980 px).
            assert_eq!(n("innerWidth"), f64::from(view.width), "{name}: {m}");
            assert!(
                n("scrollWidth") <= n("clientWidth"),
                "{name}: the page scrolls sideways: {m}"
            );
            let img = &m["img"];
            if view.no_images {
                assert_eq!(
                    img["naturalWidth"], 0,
                    "{name}: images were not blocked: {m}"
                );
                assert!(
                    img["alt"]
                        .as_str()
                        .unwrap()
                        .starts_with("Chart of failed logins per hour"),
                    "{name}: {m}"
                );
            } else {
                assert_eq!(
                    (
                        &img["complete"],
                        &img["naturalWidth"],
                        &img["naturalHeight"]
                    ),
                    (&json!(true), &json!(720), &json!(280)),
                    "{name}: the chart did not load: {m}"
                );
            }
            assert!(
                img["right"].as_f64().unwrap() <= n("clientWidth") + 0.5,
                "{name}: the chart is wider than the screen: {m}"
            );
            assert_eq!(m["verdict"], verdict.as_str(), "{name}");
            assert!(
                n("verdictTop") >= 0.0 && n("verdictBottom") <= n("innerHeight"),
                "{name}: the verdict is not on the first screen: {m}"
            );
            eprintln!("{name}: {m}");
        }
    }
}
