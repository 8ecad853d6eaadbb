//! What the console's end-to-end tests share: the repository, copies of its shipped folders,
//! free loopback ports, the real binary's one-shot commands, the console in a tmux pane
//! ([`tmux::Tmux`]).
#![allow(dead_code)]
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

#[path = "../../../tests/support/copy.rs"]
mod copy;
#[allow(unused_imports)] // only some tests copy whole trees
pub use copy::copy_dir;
pub mod tmux;

pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A loopback port that was free a moment ago (bound to port 0, read, released for mayu).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Copies the shipped templates and the files of the shipped image folders (not their
/// version folders) into `dir`.
pub fn copy_shipped(dir: &Path) {
    for sub in [
        "templates",
        "templates/snippets",
        "images/flatcar",
        "images/discovery",
    ] {
        let from = repo().join(sub);
        if !from.is_dir() {
            continue;
        }
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), dir.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
}

pub fn mayu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mayu"))
}

/// `mayu check --config DIR/config.yaml`, with `MAYU_IPXE_DIR` when given.
pub fn check(dir: &Path, ipxe_dir: Option<&Path>) -> Output {
    let mut cmd = mayu();
    cmd.args(["check", "--config"]).arg(dir.join("config.yaml"));
    if let Some(ipxe) = ipxe_dir {
        cmd.env("MAYU_IPXE_DIR", ipxe);
    }
    cmd.output().unwrap()
}

/// Fails with everything the command printed unless it succeeded; its stdout.
pub fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
