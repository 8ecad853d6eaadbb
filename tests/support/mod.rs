//! Test fixtures: a throwaway mayu folder (config, templates, images, inventory) in a temp dir.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};

use mayu::{Config, Engine};

pub struct Lab {
    pub dir: tempfile::TempDir,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
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
