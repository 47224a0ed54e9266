//! The configuration file: TOML, unknown keys rejected, every value checked while it is read so
//! that an error names the key and the line (like `nginx -t`).
//!
//! [`RawConfig`] is the file as written, with documented defaults for every key; it is turned
//! once into [`Config`], which is all the rest of the program sees. A missing default file means
//! built-in defaults, so `maillogsentinel scan FILE` works with no setup; a file named with
//! `-c` must exist.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

/// Where the configuration is read from when `-c` is not given.
pub const DEFAULT_PATH: &str = "/etc/maillogsentinel/config.toml";

/// The configuration file as written, with defaults filled in.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// `[sources]`: the logs to read and where state is kept.
    pub sources: RawSources,
    /// `[output]`: where the record of attempts goes.
    pub output: RawOutput,
}

/// `[sources]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawSources {
    /// The mail logs to follow.
    #[serde(deserialize_with = "non_empty_paths")]
    pub files: Vec<PathBuf>,
    /// Directory for checkpoints and other state.
    pub state_dir: PathBuf,
    /// Lines longer than this many bytes are skipped (and counted).
    #[serde(deserialize_with = "line_limit")]
    pub max_line_bytes: usize,
}

/// `[output]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RawOutput {
    /// The intrusion CSV rows are appended to.
    pub csv: PathBuf,
}

/// Default of `sources.max_line_bytes`: Postfix lines stay far below it (usernames are cut at
/// 100 bytes), so only garbage is longer.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
/// Smallest accepted `sources.max_line_bytes`: a real failure line can be ~600 bytes.
pub const MIN_MAX_LINE_BYTES: usize = 1024;
/// Largest accepted `sources.max_line_bytes`: it is held in memory per file.
pub const MAX_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

impl Default for RawSources {
    fn default() -> Self {
        RawSources {
            files: vec![PathBuf::from("/var/log/mail.log")],
            state_dir: PathBuf::from("/var/lib/maillogsentinel"),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

impl Default for RawOutput {
    fn default() -> Self {
        RawOutput {
            csv: PathBuf::from("/var/lib/maillogsentinel/intrusions.csv"),
        }
    }
}

fn non_empty_paths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    let v = Vec::<PathBuf>::deserialize(d)?;
    if v.is_empty() {
        return Err(serde::de::Error::custom("must name at least one log file"));
    }
    if let Some(p) = v.iter().find(|p| p.as_os_str().is_empty()) {
        return Err(serde::de::Error::custom(format!("empty file name {p:?}")));
    }
    Ok(v)
}

fn line_limit<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = u64::deserialize(d)?;
    if !(MIN_MAX_LINE_BYTES as u64..=MAX_MAX_LINE_BYTES as u64).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "{v} is out of range: give a number of bytes from {MIN_MAX_LINE_BYTES} to {MAX_MAX_LINE_BYTES}"
        )));
    }
    Ok(v as usize)
}

/// Where a configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Read from this file.
    File(PathBuf),
    /// The default file does not exist: built-in defaults.
    BuiltIn,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::BuiltIn => write!(f, "built-in defaults ({DEFAULT_PATH} does not exist)"),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where it came from.
    pub origin: Origin,
    /// The effective settings as a file would state them (for `check` and reload diffs).
    pub raw: RawConfig,
    /// The logs to read.
    pub files: Vec<PathBuf>,
    /// Directory for checkpoints and other state.
    pub state_dir: PathBuf,
    /// Lines longer than this are skipped.
    pub max_line_bytes: usize,
    /// The intrusion CSV.
    pub csv: PathBuf,
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value is wrong. The message names
    /// the line and shows it.
    #[error("invalid config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line, column and the offending key.
        message: String,
    },
}

impl Config {
    /// Loads the configuration: from `path` when given (it must exist), else from
    /// [`DEFAULT_PATH`] if it exists, else built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Config::from_toml(&text, Origin::File(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !required => {
                Ok(Config::from_raw(RawConfig::default(), Origin::BuiltIn))
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses and validates a configuration text.
    pub fn from_toml(text: &str, origin: Origin) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: match &origin {
                Origin::File(p) => p.clone(),
                Origin::BuiltIn => PathBuf::from("(built-in)"),
            },
            message: e.to_string().trim_end().to_string(),
        })?;
        Ok(Config::from_raw(raw, origin))
    }

    fn from_raw(raw: RawConfig, origin: Origin) -> Config {
        Config {
            origin,
            files: raw.sources.files.clone(),
            state_dir: raw.sources.state_dir.clone(),
            max_line_bytes: raw.sources.max_line_bytes,
            csv: raw.output.csv.clone(),
            raw,
        }
    }

    /// The effective settings as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.raw).expect("the configuration always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_toml(text, Origin::File("t.toml".into()))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("", Origin::File("t.toml".into())).unwrap();
        assert_eq!(c.raw, RawConfig::default());
        assert_eq!(c.files, vec![PathBuf::from("/var/log/mail.log")]);
        assert_eq!(c.max_line_bytes, 64 * 1024);
    }

    #[test]
    fn example_config_is_the_defaults() {
        let text = include_str!("../config.example.toml");
        let c = Config::from_toml(text, Origin::File("config.example.toml".into())).unwrap();
        assert_eq!(
            c.raw,
            RawConfig::default(),
            "config.example.toml must state the defaults"
        );
    }

    #[test]
    fn effective_settings_round_trip() {
        let c = Config::from_toml("[output]\ncsv = \"/tmp/x.csv\"\n", Origin::BuiltIn).unwrap();
        let again = Config::from_toml(&c.to_toml(), Origin::BuiltIn).unwrap();
        assert_eq!(c.raw, again.raw);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = err("[sources]\nfiles = [\"/a\"]\nstatedir = \"/x\"\n");
        assert!(e.contains("t.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("statedir"), "{e}");
        let e = err("[source]\n");
        assert!(e.contains("line 1") && e.contains("source"), "{e}");
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let e = err("[sources]\n\nfiles = []\n");
        assert!(e.contains("line 3") && e.contains("at least one"), "{e}");
        let e = err("[sources]\nmax_line_bytes = 10\n");
        assert!(
            e.contains("line 2") && e.contains("max_line_bytes") && e.contains("out of range"),
            "{e}"
        );
        let e = err("[sources]\nmax_line_bytes = \"64k\"\n");
        assert!(e.contains("line 2"), "{e}");
        let e = err("[output]\ncsv = 3\n");
        assert!(e.contains("line 2") && e.contains("csv"), "{e}");
    }

    #[test]
    fn missing_named_file_is_an_error_but_missing_default_is_not() {
        let e = Config::load(Some(Path::new("/nonexistent/maillogsentinel.toml"))).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/maillogsentinel.toml"),
            "{e}"
        );
        if !Path::new(DEFAULT_PATH).exists() {
            assert_eq!(Config::load(None).unwrap().origin, Origin::BuiltIn);
        }
    }
}
