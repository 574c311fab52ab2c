//! Configuration errors: every problem names the YAML path it is about and says how to fix it.

use std::fmt;
use std::path::PathBuf;

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// YAML path of the offending key, e.g. `acl[2].match.name` (empty for the whole file).
    pub path: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl ConfigIssue {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but has problems; all of them are listed.
    #[error("{}", Issues { file, issues })]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// Every problem found.
        issues: Vec<ConfigIssue>,
    },
}

struct Issues<'a> {
    file: &'a PathBuf,
    issues: &'a [ConfigIssue],
}

impl fmt::Display for Issues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(
            f,
            "{} has {n} problem{}:",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for issue in self.issues {
            write!(f, "\n  - {issue}")?;
        }
        Ok(())
    }
}
