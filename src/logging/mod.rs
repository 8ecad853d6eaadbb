//! Logging: tracing to a daily-rolling file in the configured log folder, and to stdout only
//! when headless (the console owns the terminal otherwise). Both are written by background
//! threads, so a request that logs never waits on a disk or a pipe. WARN and ERROR records
//! are also bus events ([`bus`]), so they reach the console's log pane.

pub mod bus;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Keeps the log writers running. Hold it for the whole run: dropping it writes out every
/// queued line.
pub struct LogGuard {
    stdout: Option<StdoutCount>,
    // Declared last so it drops last: the note about dropped stdout lines still reaches the file.
    stdout_guard: Option<WorkerGuard>,
    _file_guard: WorkerGuard,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(c) = &self.stdout {
            c.note_drops(true);
            // A stdout that fell behind may be stalled for good, and tracing-appender's guard
            // would then wait on it and print its complaint to that same stdout (a panic on a
            // closed pipe). Its lines are all in the file, so let it go without the flush.
            if c.dropped.dropped_lines() > 0 {
                if let Some(g) = self.stdout_guard.take() {
                    std::mem::forget(g);
                }
            }
        }
    }
}

/// Lines queued for the log file before a logging request waits for the disk. The file is the
/// operator's record, so it is never lossy: it waits rather than drops, which only happens
/// when the disk has fallen this many lines behind.
const FILE_QUEUE_LINES: usize = 128_000;

/// Lines queued for stdout before new ones are dropped. Stdout is lossy: it may be a pipe
/// whose reader stalls (a paused pager, a wedged journald), and a stalled reader must not stop
/// the boot server. Every drop is counted and noted in the log file.
const STDOUT_QUEUE_LINES: usize = 128_000;

/// Installs the global subscriber. Keep the guard alive for the whole run: dropping it flushes.
pub fn init(dir: &Path, to_stdout: bool) -> std::io::Result<LogGuard> {
    std::fs::create_dir_all(dir)?;
    let appender = tracing_appender::rolling::daily(dir, "mayu.log");
    let (file, file_guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(FILE_QUEUE_LINES)
        .thread_name("mayu-log-file")
        .finish(appender);
    let filter = EnvFilter::try_from_env("MAYU_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let file_layer = fmt::layer().with_writer(file.clone()).with_ansi(false);
    let (stdout, stdout_guard) = if to_stdout {
        let ansi = std::io::stdout().is_terminal();
        let (out, guard) = NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(STDOUT_QUEUE_LINES)
            .thread_name("mayu-log-stdout")
            .finish(std::io::stdout());
        let count = StdoutCount {
            dropped: out.error_counter(),
            noted: Arc::new(AtomicUsize::new(0)),
            since: Instant::now(),
            noted_at_ms: Arc::new(AtomicU64::new(0)),
            file,
        };
        let writer = CountedStdout {
            out,
            count: count.clone(),
        };
        (
            Some((fmt::layer().with_writer(writer).with_ansi(ansi), count)),
            Some(guard),
        )
    } else {
        (None, None)
    };
    let (stdout_layer, count) = stdout.unzip();
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(stdout_layer)
        .with(bus::BusLayer)
        .try_init();
    Ok(LogGuard {
        stdout: count,
        stdout_guard,
        _file_guard: file_guard,
    })
}

/// How often at most the log file says that stdout is dropping lines.
const NOTE_EVERY: Duration = Duration::from_secs(10);

/// How many stdout lines were dropped, and how many of those the log file already mentions.
#[derive(Clone)]
struct StdoutCount {
    dropped: ErrorCounter,
    noted: Arc<AtomicUsize>,
    since: Instant,
    /// When the last note was written, in milliseconds after `since`.
    noted_at_ms: Arc<AtomicU64>,
    file: NonBlocking,
}

impl StdoutCount {
    /// Writes a line to the log file if stdout dropped lines since the last note, at most
    /// every [`NOTE_EVERY`] unless `now`. A plain write to the file's queue, not a tracing
    /// event: this runs inside the subscriber.
    fn note_drops(&self, now: bool) {
        let dropped = self.dropped.dropped_lines();
        let noted = self.noted.load(Ordering::Relaxed);
        if dropped <= noted {
            return;
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let elapsed = ms(self.since.elapsed());
        let last = self.noted_at_ms.load(Ordering::Relaxed);
        if !now && noted > 0 && elapsed.saturating_sub(last) < ms(NOTE_EVERY) {
            return;
        }
        if self
            .noted
            .compare_exchange(noted, dropped, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.noted_at_ms.store(elapsed, Ordering::Relaxed);
            let mut file = self.file.clone();
            let _ = writeln!(
                file,
                "{}  WARN mayu::logging: stdout is not keeping up: {} log lines not written to \
                 it ({dropped} since start); this file has them all",
                time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                dropped - noted,
            );
        }
    }
}

/// The stdout writer, which notes dropped lines in the file before each new line.
struct CountedStdout {
    out: NonBlocking,
    count: StdoutCount,
}

impl<'a> MakeWriter<'a> for CountedStdout {
    type Writer = NonBlocking;

    fn make_writer(&'a self) -> Self::Writer {
        self.count.note_drops(false);
        self.out.clone()
    }
}
