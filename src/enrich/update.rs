//! `maillogsentinel geoip update`: fetches the configured GeoIP databases, checks them, and
//! replaces the old files atomically.
//!
//! Each database is downloaded to a temporary file beside its target, decompressed when it is
//! gzip (by content), opened and checked (format, metadata, a lookup), fsynced, then renamed
//! over the target and the directory fsynced: a running daemon sees either the old file or the
//! new one, never a partial one, and picks the new one up by itself. On any failure the old
//! file stays as it was and the command says why.
//!
//! URLs may hold `{year}` and `{month}` (DB-IP publishes one file a month); when this month's
//! file is not published yet (404), last month's is fetched instead.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{Datelike, Months, Utc};

use super::geoip::Database;

/// Why an update failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The download failed.
    #[error("downloading {url}: {message}")]
    Download {
        /// What was fetched.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The downloaded file is not a usable database.
    #[error("{url} did not give a usable database ({message}); {target} was left as it was")]
    Invalid {
        /// What was fetched.
        url: String,
        /// The file that would have been replaced.
        target: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// One database to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// URL template (`{year}`, `{month}`).
    pub url: String,
    /// Where the database goes.
    pub target: PathBuf,
}

/// The URL for a month.
pub fn url_for(template: &str, year: i32, month: u32) -> String {
    template
        .replace("{year}", &format!("{year:04}"))
        .replace("{month}", &format!("{month:02}"))
}

/// Fetches and installs one database; returns its description. `progress` shows a bar.
pub fn update(d: &Download, progress: bool) -> Result<String, UpdateError> {
    let now = Utc::now();
    let mut candidates = vec![url_for(&d.url, now.year(), now.month())];
    if d.url.contains("{month}") {
        let last = now.checked_sub_months(Months::new(1)).unwrap_or(now);
        candidates.push(url_for(&d.url, last.year(), last.month()));
    }
    let dir = d
        .target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .map_err(|source| UpdateError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    let mut last_err = None;
    for url in &candidates {
        match fetch_and_install(url, &d.target, progress) {
            Ok(desc) => return Ok(desc),
            Err(FetchError::NotFound(e)) => {
                tracing::info!("{url} is not published (yet): {e}");
                last_err = Some(UpdateError::Download {
                    url: url.clone(),
                    message: e,
                });
            }
            Err(FetchError::Other(e)) => return Err(e),
        }
    }
    Err(last_err.expect("at least one candidate"))
}

enum FetchError {
    NotFound(String),
    Other(UpdateError),
}

fn fetch_and_install(url: &str, target: &Path, progress: bool) -> Result<String, FetchError> {
    let dl = |message: String| {
        FetchError::Other(UpdateError::Download {
            url: url.to_string(),
            message,
        })
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    let mut response = match agent.get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::StatusCode(404)) => return Err(FetchError::NotFound("HTTP 404".into())),
        Err(ureq::Error::StatusCode(code)) => return Err(dl(format!("HTTP status {code}"))),
        Err(e) => return Err(dl(e.to_string())),
    };
    let length = response.body().content_length();
    let mut body = response.body_mut().as_reader();
    let tmp = target.with_file_name(format!(
        ".{}.download-{}",
        target.file_name().and_then(|n| n.to_str()).unwrap_or("db"),
        std::process::id()
    ));
    let result = (|| {
        let raw = tmp.with_extension("raw");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FetchError::Other(UpdateError::Io { path, source })
        };
        {
            let mut out = File::create(&raw).map_err(io(&raw))?;
            let bar = progress.then(|| {
                let bar = indicatif::ProgressBar::new(length.unwrap_or(0));
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_message(
                    target
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
                bar
            });
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = body
                    .read(&mut buf)
                    .map_err(|e| dl(format!("transfer interrupted: {e}")))?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).map_err(io(&raw))?;
                if let Some(bar) = &bar {
                    bar.inc(n as u64);
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        }
        // Decompress when gzip (by content, like every other input).
        {
            let mut input = crate::source::open(&raw).map_err(io(&raw))?;
            let mut out = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&tmp)
                .map_err(io(&tmp))?;
            io::copy(&mut input, &mut out).map_err(|e| {
                FetchError::Other(UpdateError::Invalid {
                    url: url.to_string(),
                    target: target.to_path_buf(),
                    message: format!("cannot decompress: {e}"),
                })
            })?;
            out.sync_all().map_err(io(&tmp))?;
        }
        let _ = std::fs::remove_file(&raw);
        let db = Database::open(&tmp).map_err(|e| {
            FetchError::Other(UpdateError::Invalid {
                url: url.to_string(),
                target: target.to_path_buf(),
                message: e.to_string(),
            })
        })?;
        let desc = db.describe();
        drop(db);
        std::fs::rename(&tmp, target).map_err(io(target))?;
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok(desc)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(tmp.with_extension("raw"));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monthly_urls() {
        let t = "https://download.db-ip.com/free/dbip-country-lite-{year}-{month}.mmdb.gz";
        assert_eq!(
            url_for(t, 2026, 3),
            "https://download.db-ip.com/free/dbip-country-lite-2026-03.mmdb.gz"
        );
        assert_eq!(
            url_for("http://x/fixed.mmdb", 2026, 3),
            "http://x/fixed.mmdb"
        );
    }
}
