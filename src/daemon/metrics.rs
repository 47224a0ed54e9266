//! `[metrics] listen`: Prometheus metrics at `/metrics` and a health check at `/health`, over
//! HTTP/1 (hyper).
//!
//! The server only asks the control loop (through the control socket's request channel) for
//! the exposition or the health, and the loop builds either from figures it already holds; the
//! pipeline's threads never see a scrape. Each connection is one request (no keep-alive), its
//! headers must arrive within [`HEADER_TIMEOUT`] and fit in [`MAX_BUF`], the whole exchange
//! within [`CONNECTION_TIMEOUT`], and at most [`MAX_CONNECTIONS`] are served at once (more are
//! closed at once): a slow or hostile client costs a task for a few seconds at most.
//!
//! Labels are of low cardinality only (a reason, a database): never an address, a username or a
//! path an attacker could multiply.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Response, StatusCode};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::control::Request;

/// How long a client has to send its request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection may last in all.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// The read buffer's limit (hyper's smallest): longer headers are refused.
pub const MAX_BUF: usize = 8192;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

/// The figures `/metrics` exposes, gathered by the control loop.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// The counters since start.
    pub counters: crate::stats::Snapshot,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Reverse DNS cache: entries, hits, misses.
    pub dns_cache: (u64, u64, u64),
    /// Reverse DNS lookups that timed out.
    pub dns_timeouts: u64,
    /// Each configured GeoIP database (`country`, `asn`) and whether it is open.
    pub geoip: Vec<(String, bool)>,
    /// Reports waiting in the outbox.
    pub outbox: u64,
    /// Whether the store takes writes.
    pub store_up: bool,
    /// Sources in each state (`following`, `waiting`...).
    pub sources: Vec<(String, u64)>,
    /// Whether every actor responds.
    pub healthy: bool,
    /// Rows committed by (service, mechanism, outcome).
    pub by_kind: Vec<(crate::stats::Kind, u64)>,
    /// The responder's figures (`None`: `[response]` is off).
    pub response: Option<crate::respond::responder::FiguresSnapshot>,
}

/// The exposition of `f` in Prometheus's text format.
pub fn exposition(f: &Figures) -> String {
    use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
    let r = Registry::new_custom(Some("maillogsentinel".into()), None).expect("valid prefix");
    let counter = |name: &str, help: &str, v: u64| {
        let c = IntCounter::new(name, help).expect("valid metric");
        c.inc_by(v);
        r.register(Box::new(c)).expect("registered once");
    };
    let gauge = |name: &str, help: &str, v: i64| {
        let g = IntGauge::new(name, help).expect("valid metric");
        g.set(v);
        r.register(Box::new(g)).expect("registered once");
    };
    let c = &f.counters;
    counter(
        "lines_read_total",
        "Log lines (or journal entries) read.",
        c.lines,
    );
    counter("bytes_read_total", "Log bytes read.", c.bytes);
    counter(
        "failures_recorded_total",
        "Failed logins recorded (committed to the store).",
        c.failures,
    );
    counter(
        "logins_recorded_total",
        "Successful logins recorded (committed to the store).",
        c.logins,
    );
    counter(
        "auth_backend_failures_total",
        "Failures of the mail server's own authentication backend (not attacks).",
        c.backend_failures,
    );
    counter(
        "relay_auth_failures_total",
        "This server's own logins refused by a relay (not attacks).",
        c.relay_auth_failures,
    );
    counter(
        "connections_without_auth_total",
        "Dovecot connections that ended without an authentication attempt.",
        c.no_auth_attempts,
    );
    counter(
        "plaintext_refused_total",
        "Dovecot clients refused for plaintext authentication.",
        c.plaintext_refused,
    );
    let skipped = IntCounterVec::new(
        Opts::new(
            "lines_skipped_total",
            "Lines not recorded, by reason (each was counted, and warned about).",
        ),
        &["reason"],
    )
    .expect("valid metric");
    for (reason, n) in [
        ("unrecognised", c.unrecognised),
        ("too_long", c.too_long),
        ("unreadable_journal_entry", c.unreadable),
    ] {
        skipped.with_label_values(&[reason]).inc_by(n);
    }
    r.register(Box::new(skipped)).expect("registered once");
    counter(
        "rotations_total",
        "Log files rotated away while followed.",
        c.rotations,
    );
    counter(
        "truncations_total",
        "Log files truncated while followed.",
        c.truncations,
    );
    counter(
        "commits_total",
        "Commits of rows and positions to the store.",
        c.checkpoints,
    );
    counter(
        "dns_cache_hits_total",
        "Reverse DNS answers served from the cache.",
        f.dns_cache.1,
    );
    counter(
        "dns_cache_misses_total",
        "Reverse DNS answers that needed a lookup.",
        f.dns_cache.2,
    );
    counter(
        "dns_timeouts_total",
        "Reverse DNS lookups that got no answer within dns_timeout.",
        f.dns_timeouts,
    );
    gauge(
        "dns_cache_entries",
        "Addresses in the reverse DNS cache.",
        f.dns_cache.0 as i64,
    );
    gauge(
        "lag_bytes",
        "Bytes of the followed files not read yet.",
        c.lag_bytes as i64,
    );
    gauge(
        "outbox_messages",
        "Reports waiting to be sent.",
        f.outbox as i64,
    );
    gauge(
        "store_up",
        "1 while the store takes writes, 0 while a write failure is retried.",
        i64::from(f.store_up),
    );
    gauge(
        "healthy",
        "1 while every actor (readers, sink) responds.",
        i64::from(f.healthy),
    );
    gauge(
        "uptime_seconds",
        "Seconds since the daemon started.",
        f.uptime_secs as i64,
    );
    let geo = IntGaugeVec::new(
        Opts::new(
            "geoip_database_up",
            "1 when the configured GeoIP database is open, 0 when it is missing or unreadable.",
        ),
        &["database"],
    )
    .expect("valid metric");
    for (db, up) in &f.geoip {
        geo.with_label_values(&[db.as_str()]).set(i64::from(*up));
    }
    r.register(Box::new(geo)).expect("registered once");
    let sources = IntGaugeVec::new(
        Opts::new("sources", "Configured sources, by state."),
        &["state"],
    )
    .expect("valid metric");
    for (state, n) in &f.sources {
        sources.with_label_values(&[state.as_str()]).set(*n as i64);
    }
    r.register(Box::new(sources)).expect("registered once");
    let kinds = IntCounterVec::new(
        Opts::new(
            "auth_events_total",
            "Rows recorded, by the service that logged them, the mechanism and the outcome (failure or login).",
        ),
        &["service", "mechanism", "outcome"],
    )
    .expect("valid metric");
    for ((service, mechanism, outcome), n) in &f.by_kind {
        kinds
            .with_label_values(&[service.as_str(), mechanism.as_str(), outcome])
            .inc_by(*n);
    }
    r.register(Box::new(kinds)).expect("registered once");
    if let Some(resp) = &f.response {
        gauge(
            "bans_active",
            "Bans running (addresses and networks banned now).",
            resp.active as i64,
        );
        counter(
            "ban_failures_total",
            "Bans whose action (nftables or the exec command) failed.",
            resp.failed,
        );
        counter(
            "protected_failures_total",
            "Failures of addresses never banned (ignored, this host's, not global unicast).",
            resp.spared,
        );
        counter(
            "forgiven_total",
            "Addresses whose failures a successful login cleared.",
            resp.forgiven,
        );
        let bans = IntCounterVec::new(
            Opts::new("bans_total", "Bans decided since start, by rule."),
            &["rule"],
        )
        .expect("valid metric");
        for (rule, n) in &resp.by_rule {
            bans.with_label_values(&[rule.as_str()]).inc_by(*n);
        }
        r.register(Box::new(bans)).expect("registered once");
    }
    let info = IntGaugeVec::new(
        Opts::new("build_info", "The program's version."),
        &["version"],
    )
    .expect("valid metric");
    info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    r.register(Box::new(info)).expect("registered once");
    let mut out = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&r.gather(), &mut out)
        .expect("the text format always encodes");
    out
}

/// Serves `/metrics` and `/health` on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    requests: mpsc::Sender<Request>,
    stop: CancellationToken,
) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // Too many at once: closed unanswered (a scraper retries at its next interval).
            drop(stream);
            continue;
        };
        let requests = requests.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| answer(req, requests.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_BUF)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
        });
    }
}

/// One request's answer.
async fn answer(
    req: hyper::Request<Incoming>,
    requests: mpsc::Sender<Request>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, kind: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", kind)
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    let text = "text/plain; charset=utf-8";
    let gone = || {
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            "the daemon is stopping\n".into(),
        )
    };
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    Ok(match (get, req.uri().path()) {
        (true, "/metrics") => {
            let (tx, rx) = oneshot::channel();
            if requests.send(Request::Metrics(tx)).await.is_err() {
                return Ok(gone());
            }
            match rx.await {
                Ok(body) => reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    body,
                ),
                Err(_) => gone(),
            }
        }
        (true, "/health") => {
            let (tx, rx) = oneshot::channel();
            if requests.send(Request::Health(tx)).await.is_err() {
                return Ok(gone());
            }
            match rx.await {
                Ok(true) => reply(StatusCode::OK, text, "ok\n".into()),
                Ok(false) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    text,
                    "an actor stopped responding (see the daemon's log)\n".into(),
                ),
                Err(_) => gone(),
            }
        }
        (false, "/metrics" | "/health") => {
            reply(StatusCode::METHOD_NOT_ALLOWED, text, "only GET\n".into())
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            text,
            "not here: /metrics or /health\n".into(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_the_example_dashboard_queries_is_exposed() {
        let text = exposition(&Figures {
            geoip: vec![("country".into(), true)],
            sources: vec![("following".into(), 1)],
            response: Some(crate::respond::responder::FiguresSnapshot {
                by_rule: vec![("per-address".into(), 2)],
                ..Default::default()
            }),
            ..Default::default()
        });
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../examples/grafana-dashboard.json"))
                .expect("the example dashboard is JSON");
        let mut queried = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for name in expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("maillogsentinel_"))
                {
                    queried += 1;
                    assert!(
                        text.contains(&format!("# TYPE {name} ")),
                        "{name} (panel {}) is not exposed",
                        panel["title"]
                    );
                }
            }
        }
        assert!(queried > 10);
    }

    #[test]
    fn the_exposition_names_every_counter_with_its_type_and_help() {
        let f = Figures {
            counters: crate::stats::Snapshot {
                lines: 10,
                failures: 3,
                too_long: 1,
                ..Default::default()
            },
            geoip: vec![("country".into(), true), ("asn".into(), false)],
            store_up: true,
            healthy: true,
            sources: vec![("following".into(), 1)],
            by_kind: vec![(
                ("postfix/submission/smtpd".into(), "LOGIN".into(), "failure"),
                3,
            )],
            ..Default::default()
        };
        let text = exposition(&f);
        for want in [
            "# TYPE maillogsentinel_lines_read_total counter",
            "maillogsentinel_lines_read_total 10",
            "maillogsentinel_failures_recorded_total 3",
            "maillogsentinel_lines_skipped_total{reason=\"too_long\"} 1",
            "maillogsentinel_geoip_database_up{database=\"asn\"} 0",
            "maillogsentinel_store_up 1",
            "maillogsentinel_sources{state=\"following\"} 1",
            "maillogsentinel_auth_events_total{mechanism=\"LOGIN\",outcome=\"failure\",service=\"postfix/submission/smtpd\"} 3",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}
