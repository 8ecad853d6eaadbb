//! Crash safety of the real binary: 20 rounds of registrations and operator edits against a
//! headless `mayu`, each ended by `kill -9` at a random moment; then every change that was
//! answered 2xx must be in its machine file *and* in git HEAD's tree and history.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mayu::machine::{Mac, MachineId};
use rand::{Rng, SeedableRng};
use support::{copy_dir, repo};

const ROUNDS: usize = 20;
const WRITERS: usize = 4;

/// The shipped config in a temp folder: loopback ports the OS picks, no DHCP.
fn lab() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("templates"), &dir.path().join("templates"));
    copy_dir(&repo().join("images"), &dir.path().join("images"));
    let text = std::fs::read_to_string(repo().join("config.yaml"))
        .unwrap()
        .replace("boot: 0.0.0.0:4081", "boot: 127.0.0.1:0")
        .replace("api: 127.0.0.1:4080", "api: 127.0.0.1:0")
        .replace("mode: full", "mode: off");
    std::fs::write(dir.path().join("config.yaml"), text).unwrap();
    dir
}

struct Mayu {
    child: Child,
    boot: SocketAddr,
    api: SocketAddr,
}

/// Starts headless mayu and waits for both listeners (read from its log on stdout).
fn start(dir: &Path) -> Mayu {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mayu"))
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .arg("--headless")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut boot, mut api) = (None, None);
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let addr = |key: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .and_then(|a| a.trim_matches('"').parse::<SocketAddr>().ok())
            };
            if line.contains("boot HTTP listening") {
                boot = addr("boot_addr=");
            }
            if line.contains("admin API listening") {
                api = addr("api_addr=");
            }
            if let (Some(b), Some(a)) = (boot, api) {
                let _ = tx.send((b, a));
                boot = None;
            }
        }
    });
    let (boot, api) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("mayu announced its listeners");
    Mayu { child, boot, api }
}

/// One HTTP/1.1 request; the status, or None when the connection failed (mayu was killed).
fn request(addr: SocketAddr, method: &str, path: &str, token: &str, body: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let auth = if token.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {token}\r\n")
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

fn mac(n: u32) -> Mac {
    let b = n.to_be_bytes();
    Mac::from_octets([0x52, 0x54, b[0], b[1], b[2], b[3]])
}

#[derive(Default)]
struct Acked {
    /// machines whose registration was answered 2xx.
    registered: BTreeSet<String>,
    /// the last hostname answered 2xx per machine.
    hostnames: BTreeMap<String, String>,
}

#[test]
fn twenty_kill_9_rounds_lose_no_acknowledged_change() {
    let dir = lab();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6d617975);
    let mut next_mac = 1u32;
    for round in 0..ROUNDS {
        let mayu = start(dir.path());
        let token = std::fs::read_to_string(dir.path().join("tokens.json.admin"))
            .unwrap()
            .trim()
            .to_string();
        // Writers: each registers new machines and renames each one it registered.
        let kill_after: usize = rng.random_range(5..60);
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (acked, done, tx, token) = (acked.clone(), done.clone(), tx.clone(), token.clone());
            let (boot, api) = (mayu.boot, mayu.api);
            let first = next_mac + (w as u32) * 10_000;
            writers.push(std::thread::spawn(move || {
                for n in first..first + 10_000 {
                    let m = mac(n);
                    let id = MachineId::from_mac(&m).to_string();
                    match request(boot, "GET", &format!("/ipxe?mac={m}"), "", "") {
                        Some(s) if (200..300).contains(&s) => {
                            acked.lock().unwrap().registered.insert(id.clone());
                        }
                        Some(s) => panic!("registration answered {s}"),
                        None => return,
                    }
                    let host = format!("r{round}-n{n}");
                    let body = format!("{{\"hostname\":\"{host}\"}}");
                    match request(
                        api,
                        "PATCH",
                        &format!("/api/v1/machines/{id}"),
                        &token,
                        &body,
                    ) {
                        Some(s) if (200..300).contains(&s) => {
                            acked.lock().unwrap().hostnames.insert(id, host);
                        }
                        Some(s) => panic!("PATCH answered {s}"),
                        None => return,
                    }
                    if done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == kill_after {
                        let _ = tx.send(());
                    }
                }
            }));
        }
        drop(tx);
        rx.recv_timeout(Duration::from_secs(120))
            .expect("writers made progress");
        let mut child = mayu.child;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for w in writers {
            w.join().expect("writer");
        }
        next_mac += (WRITERS as u32) * 10_000;
    }

    // A last start replays and reconciles; a graceful stop flushes.
    let mayu = start(dir.path());
    let pid = mayu.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut child = mayu.child;
    assert!(child.wait().unwrap().success());

    let acked = acked.lock().unwrap();
    assert!(
        acked.registered.len() >= ROUNDS * 5,
        "too little load: {}",
        acked.registered.len()
    );
    let inv = dir.path().join("inventory");
    let repo = git2::Repository::open(&inv).unwrap();
    let tree = repo.head().unwrap().peel_to_tree().unwrap();
    let mut history = String::new();
    let mut walk = repo.revwalk().unwrap();
    walk.push_head().unwrap();
    for oid in walk {
        history.push_str(repo.find_commit(oid.unwrap()).unwrap().message().unwrap());
        history.push('\n');
    }
    let mut lost = Vec::new();
    for id in &acked.registered {
        let file: PathBuf = inv.join(format!("{id}.json"));
        let on_disk = std::fs::read_to_string(&file).ok();
        let in_git = tree
            .get_name(&format!("{id}.json"))
            .and_then(|e| repo.find_blob(e.id()).ok())
            .map(|b| String::from_utf8_lossy(b.content()).into_owned());
        if on_disk.is_none() || in_git.is_none() || on_disk != in_git {
            lost.push(format!(
                "{id}: file {} git {}",
                on_disk.is_some(),
                in_git.is_some()
            ));
            continue;
        }
        if !history.contains(&format!("{id}: registered")) {
            lost.push(format!("{id}: no registration in the history"));
        }
        if let Some(host) = acked.hostnames.get(id) {
            let text = on_disk.unwrap_or_default();
            if !text.contains(&format!("\"hostname\": \"{host}\"")) {
                lost.push(format!("{id}: hostname {host} not in its file"));
            }
            if !history.contains(&format!("{id}: hostname {host}")) {
                lost.push(format!("{id}: hostname {host} not in the history"));
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged changes lost: {lost:?}",
        lost.len()
    );
    // Nothing uncommitted is left behind either.
    let mut status = git2::StatusOptions::new();
    status.include_untracked(true);
    let dirty: Vec<String> = repo
        .statuses(Some(&mut status))
        .unwrap()
        .iter()
        .filter_map(|s| s.path().map(str::to_string))
        .filter(|p| p.ends_with(".json"))
        .collect();
    assert!(
        dirty.is_empty(),
        "working tree differs from HEAD: {dirty:?}"
    );
}
