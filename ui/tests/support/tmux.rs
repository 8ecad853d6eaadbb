//! The console's end-to-end tests drive the real `mayu` binary in a tmux pane: a private tmux
//! server (its own socket, no user config) with one session, keys sent with `send-keys`, the
//! screen read with `capture-pane -p`. Waits are bounded polls of the screen.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The one session every test server holds (`-t` of tmux commands).
pub const SESSION: &str = "e2e";
/// How long [`Tmux::wait_for`] polls the screen.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Numbers the tmux servers of the tests in this process.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A private tmux server holding one pane; killed when dropped, whatever happened (the pane's
/// processes get SIGHUP, as from a closed terminal).
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// `command` in a 120×36 pane, run by the shell in folder `dir`.
    pub fn start(command: &str, dir: &Path) -> Tmux {
        Tmux::start_sized(command, dir, 120, 36)
    }

    /// `command` in a `width`×`height` pane. The pane stays after the command exits, to see
    /// what it left on the terminal.
    pub fn start_sized(command: &str, dir: &Path, width: u16, height: u16) -> Tmux {
        let t = Tmux {
            socket: format!(
                "mayu-e2e-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ),
        };
        t.ok(&[
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-c",
            &dir.display().to_string(),
        ]);
        t.ok(&["set-option", "-t", SESSION, "remain-on-exit", "on"]);
        t.ok(&["respawn-pane", "-k", "-t", SESSION, command]);
        t
    }

    /// `tmux ARGS` against this server, whatever its outcome.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// `tmux ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What the pane shows now.
    pub fn screen(&self) -> String {
        self.ok(&["capture-pane", "-p", "-t", SESSION])
    }

    /// Types `keys` (tmux key names: `Enter`, `Down`, `Escape`, or plain text).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", SESSION];
        args.extend(keys);
        self.ok(&args);
    }

    /// A pane property, e.g. `#{pane_dead}`, `#{pane_pid}`, `#{alternate_on}`.
    pub fn pane(&self, format: &str) -> String {
        self.ok(&["display-message", "-p", "-t", SESSION, format])
            .trim()
            .to_string()
    }

    /// Polls the screen until `cond` holds; fails with the screen after [`PATIENCE`].
    pub fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
