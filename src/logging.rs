//! Logging: tracing to a daily-rolling file in the configured log folder, and to stdout only
//! when headless (the console owns the terminal otherwise).

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Installs the global subscriber. Keep the guard alive for the whole run: dropping it flushes.
pub fn init(dir: &Path, to_stdout: bool) -> std::io::Result<WorkerGuard> {
    std::fs::create_dir_all(dir)?;
    let appender = tracing_appender::rolling::daily(dir, "mayu.log");
    let (file, guard) = tracing_appender::non_blocking(appender);
    let filter = EnvFilter::try_from_env("MAYU_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let file_layer = fmt::layer().with_writer(file).with_ansi(false);
    let stdout_layer = to_stdout.then(|| fmt::layer().with_writer(std::io::stdout));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(stdout_layer)
        .try_init();
    Ok(guard)
}
