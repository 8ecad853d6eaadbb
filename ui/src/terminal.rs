//! The terminal's modes: a guard that enters raw mode and the alternate screen and whose
//! `Drop` undoes both, and a panic hook that restores the terminal before anything prints.

use std::io::{self, Stdout};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio_util::sync::CancellationToken;

/// Set once a panic restored the terminal: nothing may draw after that.
static RESTORED_BY_PANIC: AtomicBool = AtomicBool::new(false);

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Owns the terminal while the console runs; dropping it (also while unwinding) restores it.
/// ratatui's own `Drop` is never run: it reports a failed cursor restore with `eprintln!`,
/// which panics once the terminal has gone (a closed window, a lost ssh session).
pub struct TerminalGuard {
    pub terminal: ManuallyDrop<Term>,
}

impl TerminalGuard {
    pub fn enter() -> io::Result<TerminalGuard> {
        enable_raw_mode()?;
        let mut out = io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen, Hide) {
            restore();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(out)) {
            Ok(terminal) => Ok(TerminalGuard {
                terminal: ManuallyDrop::new(terminal),
            }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }

    /// False once a panic took the terminal back.
    pub fn usable(&self) -> bool {
        !RESTORED_BY_PANIC.load(Ordering::SeqCst)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        // Leaves the alternate screen and shows the cursor, ignoring a terminal that is gone;
        // the terminal value itself (a stdout handle and two buffers) is left to the exit.
        restore();
    }
}

/// Leaves the alternate screen and raw mode; safe to call more than once.
pub fn restore() {
    let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
    let _ = disable_raw_mode();
}

/// A panic in any task restores the terminal, goes to the log file, and stops the console
/// (through `stop`) instead of leaving it drawing into a restored terminal.
pub fn install_panic_hook(stop: CancellationToken) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        RESTORED_BY_PANIC.store(true, Ordering::SeqCst);
        restore();
        tracing::error!(panic = %info, "panic; the console stops");
        stop.cancel();
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic on any thread stops the console through its token (and restores the terminal,
    /// which here is a no-op on a non-terminal stdout).
    #[test]
    fn a_panic_anywhere_stops_the_console() {
        let stop = CancellationToken::new();
        install_panic_hook(stop.clone());
        let joined = std::thread::spawn(|| panic!("boom in a task")).join();
        let _ = std::panic::take_hook();
        assert!(joined.is_err());
        assert!(stop.is_cancelled());
        assert!(RESTORED_BY_PANIC.load(Ordering::SeqCst));
    }
}
