//! `scripts/lab.sh up --console` as an operator runs it, in a tmux pane: from another terminal
//! `lab.sh status` says the console's mayu runs (it used to say "mayu: not running"), and
//! quitting the console takes the lab down. Needs root, a network namespace, QEMU and OpenIPMI:
//! under `CI=true` a missing piece is a failure, never a skip.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::tmux::Tmux;

const NS: &str = "mayu-lab-e2e";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `true` when the test cannot run here (and it is not CI, where that is a failure).
fn missing() -> bool {
    let mut why: Vec<String> = [
        ("tmux", "tmux"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("ipmi_sim", "openipmi"),
        ("ipmitool", "ipmitool"),
        ("dnsmasq", "dnsmasq-base"),
    ]
    .iter()
    .filter(|(tool, _)| !on_path(tool))
    .map(|(tool, pkg)| format!("{tool} (Debian {pkg})"))
    .collect();
    if !is_root() {
        why.push("root (network namespaces)".into());
    }
    if why.is_empty() {
        return false;
    }
    let reason = format!("missing {}; see scripts/install-deps.sh", why.join(", "));
    assert!(!in_ci(), "lab_console cannot run in CI: {reason}");
    eprintln!("lab_console: not run: {reason}");
    true
}

/// `scripts/lab.sh ARGS` on this test's namespace and folder.
fn lab_sh(dir: &Path, args: &[&str]) -> Output {
    Command::new(support::repo().join("scripts/lab.sh"))
        .args(args)
        .env("MAYU_LAB_NS", NS)
        .env("MAYU_LAB_DIR", dir)
        .env("MAYU_BIN", env!("CARGO_BIN_EXE_mayu"))
        .output()
        .unwrap()
}

/// Takes the lab down whatever happened.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = lab_sh(self.0, &["down"]);
    }
}

#[test]
fn lab_status_sees_the_console_lab_and_quitting_takes_it_down() {
    if missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lab_dir = dir.path().join("lab");
    let _down = Down(&lab_dir);
    let command = format!(
        "MAYU_LAB_NS={NS} MAYU_LAB_DIR={} MAYU_BIN={} {} up --console --vms 1",
        lab_dir.display(),
        env!("CARGO_BIN_EXE_mayu"),
        support::repo().join("scripts/lab.sh").display()
    );
    let tmux = Tmux::start_sized(&command, dir.path(), 140, 40);
    // The console is up once its machines table is drawn.
    tmux.wait_for("the console", |s| s.contains("Machines"));

    // From another terminal, while the console runs.
    let out = lab_sh(&lab_dir, &["status"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("mayu: running with its console in another terminal"),
        "{text}"
    );
    assert!(!text.contains("not running"), "{text}");

    // Quit: it may ask first while the machine boots.
    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if tmux.pane("#{pane_dead}") == "1" {
            break;
        }
        let screen = tmux.screen();
        if screen.contains("stop DHCP, TFTP and HTTP") {
            tmux.keys(&["y"]);
        }
        assert!(
            Instant::now() < deadline,
            "the lab did not go down after q; the screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = lab_sh(&lab_dir, &["status"]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("down (no namespace"), "{text}");
}
