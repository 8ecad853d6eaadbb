//! The one-shot commands of the real `mayu` binary: check, render, import-mayu.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::process::Command;

fn mayu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mayu"))
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A copy of the shipped config, templates and images in a temp folder.
fn lab(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in [
        "templates",
        "templates/snippets",
        "images/flatcar",
        "images/discovery",
    ] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for e in std::fs::read_dir(repo().join(sub)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), dir.path().join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    let text = std::fs::read_to_string(repo().join("config.yaml")).unwrap();
    std::fs::write(dir.path().join("config.yaml"), edit(text)).unwrap();
    dir
}

#[test]
fn check_accepts_the_shipped_config() {
    let out = mayu()
        .args(["check", "--config"])
        .arg(repo().join("config.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("profile    control-plane    quantity 3"),
        "{stdout}"
    );
}

#[test]
fn check_names_the_line_of_an_unknown_key() {
    let dir = lab(|t| t.replace("  domain: lab\n", "  domain: lab\n  colour: blue\n"));
    let cfg = dir.path().join("config.yaml");
    let out = mayu()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = std::fs::read_to_string(&cfg)
        .unwrap()
        .lines()
        .position(|l| l.contains("colour"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!(
            "{}:{line}:3: unknown field `colour`",
            cfg.display()
        )),
        "{stderr}"
    );
}

#[test]
fn check_names_a_broken_template() {
    let dir = lab(|t| t);
    std::fs::write(
        dir.path().join("templates/discovery.ipxe"),
        "#!ipxe\n\nkernel {{ urls.assets }/vmlinuz\n",
    )
    .unwrap();
    let out = mayu()
        .args(["check", "--config"])
        .arg(dir.path().join("config.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("discovery.ipxe:3:"), "{stderr}");
}

#[test]
fn import_then_render_a_machine() {
    let dir = lab(|t| t);
    let cluster = dir.path().join("old-mayu");
    std::fs::create_dir_all(cluster.join("abc1")).unwrap();
    std::fs::write(cluster.join("cluster.json"), "{}").unwrap();
    std::fs::write(
        cluster.join("abc1/conf.json"),
        r#"{"Serial":"ABC1","MacAddresses":["00:16:3e:aa:bb:01"],"Profile":"worker","Hostname":"node-1"}"#,
    )
    .unwrap();
    let cfg = dir.path().join("config.yaml");
    let out = mayu()
        .args(["import-mayu", "--config"])
        .arg(&cfg)
        .arg(&cluster)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported abc1"));

    let out = mayu()
        .args(["render", "--config"])
        .arg(&cfg)
        .args(["--mac", "00:16:3e:aa:bb:01", "--template", "ignition"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ignition"]["version"], "3.3.0");
    assert!(String::from_utf8_lossy(&out.stdout).contains("data:,node-1"));

    let out = mayu()
        .args(["render", "--config"])
        .arg(&cfg)
        .args(["--machine", "abc2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did you mean: abc1"), "{stderr}");
}
