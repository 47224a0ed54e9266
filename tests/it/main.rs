//! Integration tests: one test crate (one link step) driving the real binary.

mod anonymize;
mod browser;
mod check;
mod control;
mod daemon;
mod daemon_durability;
mod daemon_faults;
mod daemon_systemd;
mod dns_server;
mod enrich;
mod geoip_update;
mod http_server;
mod journal;
mod journald;
mod mmdb;
mod pg_server;
mod report;
mod report_day;
mod respond;
mod scan;
mod scan_bad_input;
mod smtp_server;
mod stores;
mod support;
