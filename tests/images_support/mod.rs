//! Test fixtures for `mayu images`: a throwaway OpenPGP key (gpg in a temp home) and a tiny
//! HTTP server on loopback serving a fake vendor release, with replies a test can spoil.
//! Shared by tests/images.rs and ui/tests/images_cli.rs.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// Whether `tool` can run. Missing: a failure under CI (`CI=true`), else the test skips.
pub fn have(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is not installed (scripts/install-deps.sh installs it)"
        );
        eprintln!("skipped: {tool} is not installed");
    }
    ok
}

/// A signing key made for one test, in its own GnuPG home; its agent is stopped on drop.
pub struct Gpg {
    pub home: tempfile::TempDir,
    pub fingerprint: String,
}

impl Gpg {
    pub fn new(name: &str) -> Gpg {
        let home = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("gpg")
                .arg("--homedir")
                .arg(home.path())
                .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "gpg {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let uid = format!("{name} <{name}@mayu.invalid>");
        run(&["--quick-gen-key", &uid, "ed25519", "sign", "never"]);
        let listing = run(&["--with-colons", "--list-keys", &uid]);
        let fingerprint = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .unwrap();
        Gpg { home, fingerprint }
    }

    /// The public key, armored, written to `path`.
    pub fn export(&self, path: &Path) {
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--armor", "--export", &self.fingerprint])
            .output()
            .unwrap();
        assert!(out.status.success() && !out.stdout.is_empty());
        std::fs::write(path, out.stdout).unwrap();
    }

    /// A binary detached signature over `data`, as vendors publish them.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data");
        std::fs::write(&file, data).unwrap();
        let sig = dir.path().join("data.sig");
        let out = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args([
                "--local-user",
                &self.fingerprint,
                "--detach-sign",
                "--output",
            ])
            .arg(&sig)
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg --detach-sign: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(sig).unwrap()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "all"])
            .output();
    }
}

/// What the server answers for one path.
#[derive(Clone)]
pub enum Reply {
    Body(Vec<u8>),
    Status(u16),
    /// claims `claimed` bytes in Content-Length, sends `body`, then closes the connection.
    Short {
        body: Vec<u8>,
        claimed: usize,
    },
}

/// A loopback HTTP/1.1 server answering from a table the test edits; one connection at a time
/// is plenty for one download after another. Stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, s) = (routes.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let reply = r.lock().unwrap().get(&path).cloned();
                let (status, body, claimed) = match reply {
                    Some(Reply::Body(b)) => (200, b.clone(), b.len()),
                    Some(Reply::Status(code)) => (code, b"no\n".to_vec(), 3),
                    Some(Reply::Short { body, claimed }) => (200, body, claimed),
                    None => (404, b"not found\n".to_vec(), 10),
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {claimed}\r\nConnection: close\r\n\r\n"
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
                let _ = conn.flush();
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
        });
        Server {
            addr,
            routes,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
    }

    pub fn body(&self, path: &str) -> Option<Vec<u8>> {
        match self.routes.lock().unwrap().get(path) {
            Some(Reply::Body(b)) => Some(b.clone()),
            _ => None,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Bytes that look like nothing in particular, different per `seed`.
pub fn blob(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[0] ^ seed)
        .collect()
}

pub const KERNEL: &str = "flatcar_production_pxe.vmlinuz";
pub const INITRD: &str = "flatcar_production_pxe_image.cpio.gz";

/// Publishes a Flatcar release as `https://<channel>.release.flatcar-linux.net` lays it out:
/// `/amd64-usr/<version>/` with version.txt, the PXE kernel and initrd and their `.sig`s.
/// Returns (kernel, initrd).
pub fn publish_flatcar(server: &Server, gpg: &Gpg, version: &str) -> (Vec<u8>, Vec<u8>) {
    let seed = version.bytes().fold(0u8, |a, b| a.wrapping_add(b));
    let kernel = blob(seed, 300_000);
    let initrd = blob(seed.wrapping_add(1), 700_000);
    let dir = format!("/amd64-usr/{version}");
    server.set(
        &format!("{dir}/version.txt"),
        Reply::Body(
            format!("FLATCAR_BUILD=1\nFLATCAR_VERSION={version}\nFLATCAR_VERSION_ID={version}\n")
                .into_bytes(),
        ),
    );
    for (name, data) in [(KERNEL, &kernel), (INITRD, &initrd)] {
        server.set(&format!("{dir}/{name}"), Reply::Body(data.clone()));
        server.set(&format!("{dir}/{name}.sig"), Reply::Body(gpg.sign(data)));
    }
    (kernel, initrd)
}

/// Points `/amd64-usr/current/` at `version`.
pub fn set_current(server: &Server, version: &str) {
    let text = format!("FLATCAR_VERSION={version}\n");
    server.set(
        "/amd64-usr/current/version.txt",
        Reply::Body(text.into_bytes()),
    );
}

/// Everything below `dir` whose name starts with `.fetch-` (a fetch's temp folders).
pub fn temp_folders(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(".fetch-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}
