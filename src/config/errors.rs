//! Config errors as the operator reads them: each one names the file, line and column of what
//! is wrong (`file:line:col: message`), and a load reports every one it found.

use std::path::{Path, PathBuf};

use serde_saphyr::Location;

/// One problem found in a config file, located for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl ConfigError {
    /// A problem at a parser location in `file`.
    pub(super) fn at(file: &Path, loc: &Location, message: String) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
            message,
        }
    }

    /// The file could not be read at all (no line or column to give).
    pub(super) fn unreadable(file: &Path, e: &std::io::Error) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        }
    }

    /// The YAML did not fit the schema: located where the parser stopped.
    pub(super) fn parse(file: &Path, e: &serde_saphyr::Error) -> ConfigError {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            message: plain_message(e),
        }
    }
}

/// The parser's message without its own location suffix or snippet (we print `file:line:col`).
fn plain_message(e: &serde_saphyr::Error) -> String {
    let opts = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
    let text = e.render_with_options(opts);
    let first = text.lines().next().unwrap_or("").trim();
    // "... at line 3, column 5" style suffixes repeat what we already print.
    let cut = first.find(" at line ").unwrap_or(first.len());
    first[..cut].trim_end_matches(',').to_string()
}

/// Every problem found in one config file (never empty), one per line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
