//! A throwaway mayu for API and mayuctl tests: config, templates and images in a temp folder,
//! an engine with a git inventory, tokens (one admin, one read-only), and the API served on
//! 127.0.0.1:0.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mayu::api::{self, ApiState, Renderer};
use mayu::engine::Registration;
use mayu::machine::{Machine, Phase};
use mayu::metrics::Metrics;
use mayu::tokens::{Scope, Tokens};
use mayu::{Config, Engine};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const CONFIG: &str = r#"
network:
  address: 10.77.0.1
  dhcp: { mode: off }
http: { boot: "127.0.0.1:0", api: "127.0.0.1:0" }
assignment: manual
profiles:
  - name: worker
    quantity: 1
    image: flatcar
    templates: { ipxe: flatcar.ipxe, ignition: worker.yaml }
  - name: discovery
    image: discovery
    templates: { ipxe: discovery.ipxe }
"#;

/// Renders `<template> for <id> token=<machine token>` so tests see the renderer got the
/// whole machine.
pub struct FakeRenderer;

impl Renderer for FakeRenderer {
    fn status(&self) -> serde_json::Value {
        serde_json::json!({"ok": true, "last_reload": "2026-01-01T00:00:00Z", "errors": []})
    }
    fn render(&self, machine: &Machine, template: &str) -> Result<String, String> {
        if template == "missing" {
            return Err("no template `missing` in this profile".into());
        }
        Ok(format!(
            "{template} for {} token={}\n",
            machine.id, machine.token
        ))
    }
}

pub struct Fixture {
    pub dir: TempDir,
    pub engine: Engine,
    pub tokens: Tokens,
    pub metrics: Metrics,
    pub state: ApiState,
    pub admin: String,
    pub reader: String,
    pub admin_file: std::path::PathBuf,
    pub addr: SocketAddr,
    pub cancel: CancellationToken,
    pub server: JoinHandle<std::io::Result<()>>,
    /// `https` when served over TLS; then `ca_file` holds the server's self-signed certificate.
    pub scheme: &'static str,
    pub ca_file: Option<std::path::PathBuf>,
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

pub fn register(engine: &Engine, mac: &str, serial: Option<&str>) -> Machine {
    engine
        .register(
            Registration {
                mac: Some(mac.parse().unwrap()),
                serial: serial.map(str::to_string),
                ..Registration::default()
            },
            Phase::Ipxe,
        )
        .unwrap()
}

/// Starts a server with three waiting machines: `sn-a1`, `sn-a2` and `52-54-00-00-00-03`.
pub async fn start(with_renderer: bool) -> Fixture {
    start_with(with_renderer, false).await
}

/// Like [`start`], served over TLS with a fresh self-signed certificate for 127.0.0.1 named in
/// the config as relative `http.tls` paths.
pub async fn start_tls() -> Fixture {
    start_with(false, true).await
}

async fn start_with(with_renderer: bool, tls: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("templates/flatcar.ipxe"), "#!ipxe\n");
    write(&root.join("templates/worker.yaml"), "ignition: {}\n");
    write(&root.join("templates/discovery.ipxe"), "#!ipxe\n");
    write(&root.join("images/flatcar/README.md"), "flatcar\n");
    write(&root.join("images/discovery/README.md"), "discovery\n");
    let config_path = root.join("config.yaml");
    let text = if tls {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        write(&root.join("tls/api.crt"), &cert.pem());
        write(&root.join("tls/api.key"), &key.serialize_pem());
        CONFIG.replace(
            "http: { boot: \"127.0.0.1:0\", api: \"127.0.0.1:0\" }",
            "http:\n  boot: \"127.0.0.1:0\"\n  api: \"127.0.0.1:0\"\n  tls: { cert: tls/api.crt, key: tls/api.key }",
        )
    } else {
        CONFIG.to_string()
    };
    write(&config_path, &text);
    let config = Config::parse(&config_path, &text).unwrap();
    let tokens_file = config.tokens_file.clone();
    let engine = Engine::open(config).unwrap();
    register(&engine, "52:54:00:00:00:01", Some("SN-A1"));
    register(&engine, "52:54:00:00:00:02", Some("SN-A2"));
    register(&engine, "52:54:00:00:00:03", None);
    engine.flush().unwrap();

    let (tokens, created) = Tokens::load_or_create(&tokens_file).unwrap();
    let created = created.expect("first start creates an admin token");
    let reader = tokens.add("viewer", Scope::Read).unwrap();
    let metrics = Metrics::new();
    let cancel = CancellationToken::new();
    metrics.spawn_feed(engine.clone(), cancel.clone());
    let mut state = ApiState::new(engine.clone(), tokens.clone(), metrics.clone())
        .with_shutdown(cancel.clone());
    if with_renderer {
        state = state.with_renderer(Arc::new(FakeRenderer));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = api::router(state.clone());
    let (server, scheme, ca_file) = match api::tls::configured_paths(engine.config()) {
        Some((cert, key)) => {
            let tls = api::tls::load(&cert, &key).unwrap();
            let task = tokio::spawn(api::tls::serve(listener, router, tls, cancel.clone()));
            (task, "https", Some(cert))
        }
        None => (
            tokio::spawn(api::serve(listener, router, cancel.clone())),
            "http",
            None,
        ),
    };
    Fixture {
        dir,
        engine,
        tokens,
        metrics,
        state,
        admin: created.secret,
        reader,
        admin_file: created.secret_file,
        addr,
        cancel,
        server,
        scheme,
        ca_file,
    }
}

impl Fixture {
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// Commits in the inventory's git repository, after everything queued is written.
    pub fn commits(&self) -> usize {
        self.engine.flush().unwrap();
        let repo = git2::Repository::open(&self.engine.config().inventory).unwrap();
        let mut walk = repo.revwalk().unwrap();
        walk.push_head().unwrap();
        walk.count()
    }

    /// Every machine as the engine holds it, for before/after comparisons.
    pub fn inventory(&self) -> Vec<Machine> {
        self.engine.list()
    }

    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("server stops after cancel")
            .unwrap()
            .unwrap();
    }
}
