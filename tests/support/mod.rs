//! Test fixtures: a throwaway mayu folder (config, templates, images, inventory) in a temp dir.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use mayu::boot::BootState;
use mayu::{Config, Engine};
use tower::ServiceExt;

mod copy;
pub mod etcd;
pub mod qemu;

pub use copy::copy_dir;

pub struct Lab {
    pub dir: tempfile::TempDir,
}

/// A machine as iPXE would describe it: MAC 52:54:xx:xx:xx:xx and serial `SN{i:05}`.
pub fn reg(i: u32) -> mayu::engine::Registration {
    let b = i.to_be_bytes();
    mayu::engine::Registration {
        mac: Some(mayu::machine::Mac::from_octets([
            0x52, 0x54, b[0], b[1], b[2], b[3],
        ])),
        serial: Some(format!("SN{i:05}")),
        ..Default::default()
    }
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

impl Lab {
    /// The shipped config, templates and image folders, with `edits` applied to config.yaml
    /// (each `(from, to)` must match).
    pub fn new(edits: &[(&str, &str)]) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("templates"), &dir.path().join("templates"));
        copy_dir(&repo().join("images"), &dir.path().join("images"));
        let mut text = std::fs::read_to_string(repo().join("config.yaml")).unwrap();
        // Tests listen on loopback ports the OS picks.
        text = text
            .replace("boot: 0.0.0.0:4081", "boot: 127.0.0.1:0")
            .replace("api: 127.0.0.1:4080", "api: 127.0.0.1:0");
        for (from, to) in edits {
            assert!(text.contains(from), "config.yaml has no `{from}`");
            text = text.replacen(from, to, 1);
        }
        std::fs::write(dir.path().join("config.yaml"), text).unwrap();
        Lab { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> Config {
        Config::load(&self.path().join("config.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn engine(&self) -> Engine {
        Engine::open(self.config()).unwrap()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// The boot port's state over a fresh engine and the live templates of this lab.
    pub fn boot_state(&self) -> BootState {
        let engine = self.engine();
        let templates =
            std::sync::Arc::new(mayu::templates::Templates::load(engine.config()).unwrap());
        BootState {
            engine,
            templates,
            boot_addr: "127.0.0.1:4081".parse().unwrap(),
        }
    }

    /// Number of commits in the inventory's audit repository.
    pub fn commits(&self) -> usize {
        let repo = git2::Repository::open(self.path().join("inventory")).unwrap();
        let mut walk = repo.revwalk().unwrap();
        walk.push_head().unwrap();
        walk.count()
    }
}

/// Waits for the first event matching `pred`, failing after `secs` seconds.
pub async fn wait_for<F>(
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<mayu::events::Event>>,
    secs: u64,
    mut pred: F,
) -> std::sync::Arc<mayu::events::Event>
where
    F: FnMut(&mayu::events::Event) -> bool,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("timed out waiting for an event")
            .expect("bus closed");
        if pred(&ev) {
            return ev;
        }
    }
}

/// `req` through `router` without a socket: status, headers and the whole body.
pub async fn oneshot(router: axum::Router, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body.to_vec())
}

/// `method uri` with `body` through the boot port's router: status and body text.
pub async fn boot_call(s: &BootState, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, _, body) = oneshot(mayu::boot::router(s.clone()), req).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Runs `cmd` to its end with `input` on its stdin; what it printed where `cmd` piped it.
/// `Err` only when it cannot start.
pub fn with_stdin(
    cmd: &mut std::process::Command,
    input: &[u8],
) -> std::io::Result<std::process::Output> {
    use std::io::Write as _;
    let mut child = cmd.stdin(std::process::Stdio::piped()).spawn()?;
    child.stdin.take().unwrap().write_all(input).unwrap();
    Ok(child.wait_with_output().unwrap())
}

/// mayu's services (`mayu::services::start`) over a lab's engine on loopback ports the OS
/// picked; [`Running::stop`] cancels them and waits until they have stopped.
pub struct Running {
    pub engine: Engine,
    pub boot: std::net::SocketAddr,
    pub api: std::net::SocketAddr,
    pub cancel: tokio_util::sync::CancellationToken,
    services: Option<mayu::services::Services>,
}

impl Running {
    pub async fn start(lab: &Lab) -> Running {
        let engine = lab.engine();
        let cancel = tokio_util::sync::CancellationToken::new();
        let services = mayu::services::start(engine.clone(), cancel.clone())
            .await
            .unwrap();
        Running {
            engine,
            boot: services.boot_addr,
            api: services.api_addr,
            cancel,
            services: Some(services),
        }
    }

    /// `path` on the boot port.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.boot)
    }

    /// The admin token mayu wrote at its first start.
    pub fn token(&self) -> String {
        let file = self
            .services
            .as_ref()
            .and_then(|s| s.admin_token_file.as_ref());
        std::fs::read_to_string(file.unwrap())
            .unwrap()
            .trim()
            .to_string()
    }

    /// Cancels the services and waits (a bounded time) until every one has stopped.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(s) = self.services.take() {
            tokio::time::timeout(std::time::Duration::from_secs(60), s.stopped())
                .await
                .expect("services stop");
        }
    }
}

/// Fails the whole test binary, naming `test`, if the guard is still alive after `limit`: a
/// hang (a deadlock, a peer that never answers) is a failure with a name, not a CI timeout.
pub struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

pub fn watchdog(test: &'static str, limit: std::time::Duration) -> Watchdog {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("{test}: still running after {limit:?}; aborting the test binary");
            std::process::abort();
        }
    });
    Watchdog(Some(tx))
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // The sender's drop ends the watchdog's wait with `Disconnected`.
        self.0.take();
    }
}

/// `text` passes Prometheus's own linter, `promtool check metrics` (Debian package
/// `prometheus`, installed by scripts/install-deps.sh); the failure shows promtool's words
/// and `text`.
pub fn promtool_accepts(text: &str) {
    let out = with_stdin(
        std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
        text.as_bytes(),
    )
    .expect("promtool (Debian `prometheus`) is installed by scripts/install-deps.sh");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `m` assigned to the `worker` profile (by `t`) and served a 4096-byte kernel in 3 ms: one
/// series in the profile and boot-step families of `/metrics`.
pub fn worker_served_a_kernel(engine: &Engine, m: &mayu::machine::Machine) {
    engine.assign(m.id.as_str(), "worker", "t", false).unwrap();
    engine.boot_step(
        Some(&m.id),
        mayu::machine::Phase::Kernel,
        "vmlinuz".into(),
        Some(4096),
        Some(3),
    );
}
