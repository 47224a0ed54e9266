//! The sink stage: the durable record of every failed login.
//!
//! [`csv::CsvSink`] appends rows to the intrusion CSV (the default record). Rows are only
//! ever appended; a file is never rewritten.

pub mod committer;
pub mod csv;

pub use self::csv::{COLUMNS, CsvFile, CsvSink, RowFormatter, SinkError};
