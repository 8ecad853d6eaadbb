//! `mayu --headless`: the services run without a terminal, log to stdout, and stop cleanly on
//! SIGTERM with exit status 0. Waits are bounded polls on observable output.

// Test helpers may unwrap: a panic is the failure report (clippy only exempts #[test] fns).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::{free_port, repo};

#[test]
fn headless_serves_logs_to_stdout_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    support::copy_shipped(dir.path());
    let boot = free_port();
    let text = std::fs::read_to_string(repo().join("config.yaml"))
        .unwrap()
        .replace("boot: 0.0.0.0:4081", &format!("boot: 127.0.0.1:{boot}"))
        .replace(
            "api: 127.0.0.1:4080",
            &format!("api: 127.0.0.1:{}", free_port()),
        )
        .replace("mode: full", "mode: off")
        .replace(
            "images: images",
            &format!("images: {}", repo().join("images").display()),
        );
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, text).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_mayu"))
        .arg("--headless")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    // the log line that says where the boot port listens, within a bounded wait
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let ready = line.contains("running headless");
                seen.push(line);
                if ready {
                    break;
                }
            }
            Err(_) => panic!("no start-up line on stdout; got:\n{}", seen.join("\n")),
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.contains(&format!("127.0.0.1:{boot}"))),
        "{}",
        seen.join("\n")
    );
    std::net::TcpStream::connect(("127.0.0.1", boot)).expect("the boot port listens");

    let pid = i32::try_from(child.id()).unwrap();
    // the kill(1) tool keeps libc out of the dev-dependencies
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit {status:?}\n{stderr}");
    assert!(
        rest.iter().any(|l| l.contains("stopped")),
        "no clean stop in the log:\n{}",
        rest.join("\n")
    );
    // the log file got the same lines
    let logs: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!logs.is_empty(), "no log file");
    // Neither stdout (not a terminal here: a pipe, a file, journald) nor the log file carries
    // terminal colour codes.
    let out = seen.iter().chain(&rest);
    assert!(
        out.clone().all(|l| !l.contains('\x1b')),
        "colour codes on stdout:\n{}",
        out.cloned().collect::<Vec<_>>().join("\n")
    );
    for f in logs {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains("stopped"), "{}: {text}", f.display());
        assert!(!text.contains('\x1b'), "colour codes in {}", f.display());
    }
}
