//! maillogsentinel: watches a Postfix mail log, records every failed SASL login with who
//! attacked, and reports on it.
//!
//! The library is the pipeline, one module per stage:
//! - [`source`]: reads log files (plain, gzip, stdin) into blocks of whole lines, and the
//!   systemd journal into entries;
//! - [`parse`]: finds and parses SASL authentication failures in those blocks;
//! - [`sink`]: the durable record of every attempt (CSV);
//! - [`config`]: the configuration file, validated once;
//! - [`scan`]: the one-shot pipeline behind `maillogsentinel scan`;
//! - [`stats`]: the counters every stage reports into.
//!
//! The binary (`src/main.rs`, with [`cli`]) is a thin edge over it.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod alerts;
pub mod anonymize;
pub mod check;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod enrich;
pub mod pager;
pub mod parse;
pub mod pipeline;
pub mod ratelimit;
pub mod report;
pub mod respond;
pub mod scan;
pub mod sink;
pub mod source;
pub mod state;
pub mod stats;
pub mod store;
