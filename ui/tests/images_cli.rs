//! `mayu images fetch|list|gc` and `mayu check` on images, through the real binary, against a
//! fake vendor on loopback signed with a key made in the test.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[path = "../../tests/images_support/mod.rs"]
mod images_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use images_support::{have, publish_flatcar, set_current, Gpg, Reply, Server};

const CONFIG: &str = "network:
  interface: lo
  address: 127.0.0.1
  prefix: 8
  dhcp: { mode: off }
http: { boot: 127.0.0.1:0, api: 127.0.0.1:0 }
assignment: manual
profiles:
  - name: node
    image: flatcar
    templates: { ipxe: node.ipxe }
  - name: lab
    image: discovery
    templates: { ipxe: node.ipxe }
";

struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new(config: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("templates")).unwrap();
        std::fs::write(
            root.join("templates/node.ipxe"),
            "#!ipxe\nkernel {{ urls.assets }}/vmlinuz\nboot\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("images/discovery")).unwrap();
        std::fs::create_dir_all(root.join("images/flatcar")).unwrap();
        std::fs::write(root.join("images/discovery/vmlinuz"), b"a local kernel").unwrap();
        std::fs::write(root.join("config.yaml"), config).unwrap();
        Lab { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    fn flatcar(&self, version: &str) -> PathBuf {
        self.dir.path().join("images/flatcar").join(version)
    }

    fn mayu(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mayu"))
            .args(args)
            .arg("--config")
            .arg(self.config())
            .output()
            .unwrap()
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fetch_args<'a>(server: &'a str, key: &'a Path) -> Vec<&'a str> {
    vec![
        "images",
        "fetch",
        "flatcar",
        "--mirror",
        server,
        "--key",
        key.to_str().unwrap(),
    ]
}

/// A machine file as the inventory keeps it, pinned to `version` by its override.
fn pin(lab: &Lab, id: &str, version: &str) {
    let inv = lab.dir.path().join("inventory");
    std::fs::create_dir_all(&inv).unwrap();
    let m = serde_json::json!({
        "id": id,
        "state": "configured",
        "profile": "node",
        "token": "t0k3n",
        "overrides": { "image_version": version },
    });
    std::fs::write(
        inv.join(format!("{id}.json")),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
}

#[test]
fn fetch_list_and_gc_through_the_binary() {
    if !(have("gpg") && have("gpgv")) {
        return;
    }
    let lab = Lab::new(CONFIG);
    let server = Server::start();
    let gpg = Gpg::new("vendor");
    let key = lab.dir.path().join("vendor.asc");
    gpg.export(&key);
    let url = server.url();

    publish_flatcar(&server, &gpg, "4081.2.0");
    set_current(&server, "4081.2.0");
    let out = lab.mayu(&fetch_args(&url, &key));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("fetched flatcar 4081.2.0"), "{stdout}");
    assert!(
        stdout.contains(&format!("verified: signatures by {}", gpg.fingerprint)),
        "{stdout}"
    );
    // Not a terminal: no progress lines.
    assert!(!stderr.contains("MiB"), "{stderr}");

    publish_flatcar(&server, &gpg, "4152.0.0");
    set_current(&server, "4152.0.0");
    let out = lab.mayu(&fetch_args(&url, &key));
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(lab.flatcar("4081.2.0").is_dir() && lab.flatcar("4152.0.0").is_dir());

    pin(&lab, "m-pinned", "4081.2.0");
    pin(&lab, "m-ahead", "9999.0.0");
    let out = lab.mayu(&["images", "list"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let line = |v: &str| {
        stdout
            .lines()
            .find(|l| l.contains(v))
            .unwrap_or_else(|| panic!("no {v} in\n{stdout}"))
            .to_string()
    };
    let old = line("4081.2.0");
    assert!(old.starts_with("flatcar"), "{old}");
    assert!(
        old.contains(&format!("verified by {}", gpg.fingerprint)),
        "{old}"
    );
    assert!(old.contains("machine m-pinned"), "{old}");
    assert!(old.contains("KiB"), "{old}");
    let missing = line("9999.0.0");
    assert!(
        missing.contains("MISSING") && missing.contains("machine m-ahead"),
        "{missing}"
    );
    let new = line("4152.0.0");
    assert!(new.contains("profile node"), "{new}");
    let local = line("(local)");
    assert!(
        local.starts_with("discovery") && local.contains("local") && local.contains("profile lab"),
        "{local}"
    );

    // Both are used: gc keeps them.
    let out = lab.mayu(&["images", "gc"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(!stdout.contains("removed"), "{stdout}");
    assert!(lab.flatcar("4081.2.0").is_dir() && lab.flatcar("4152.0.0").is_dir());

    // Unpinned, the older one is unused: a dry run names it and keeps it, gc removes it.
    std::fs::remove_file(lab.dir.path().join("inventory/m-pinned.json")).unwrap();
    std::fs::remove_file(lab.dir.path().join("inventory/m-ahead.json")).unwrap();
    let out = lab.mayu(&["images", "gc", "--dry-run"]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("would remove flatcar/4081.2.0"), "{stdout}");
    assert!(!stdout.contains("4152.0.0"), "{stdout}");
    assert!(lab.flatcar("4081.2.0").is_dir());
    // Folders no fetch made are left alone: one copied by hand, one inside a local image.
    std::fs::create_dir_all(lab.flatcar("7.0.0")).unwrap();
    std::fs::write(lab.flatcar("7.0.0").join("vmlinuz"), b"by hand").unwrap();
    let extra = lab.dir.path().join("images/discovery/modules");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("a.ko"), b"module").unwrap();
    let (listing, _) = text(&lab.mayu(&["images", "list"]));
    assert!(!listing.contains("modules"), "{listing}");
    assert!(listing.contains("UNVERIFIED"), "{listing}");
    let out = lab.mayu(&["images", "gc"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("removed flatcar/4081.2.0"), "{stdout}");
    assert!(lab.flatcar("7.0.0").join("vmlinuz").is_file());
    assert!(extra.join("a.ko").is_file());
    assert!(!lab.flatcar("4081.2.0").exists());
    assert!(lab.flatcar("4152.0.0").is_dir());
    assert!(lab.dir.path().join("images/discovery/vmlinuz").is_file());
    assert!(images_support::temp_folders(&lab.dir.path().join("images/flatcar")).is_empty());
}

#[test]
fn a_failed_fetch_through_the_binary_says_why_and_installs_nothing() {
    if !(have("gpg") && have("gpgv")) {
        return;
    }
    let lab = Lab::new(CONFIG);
    let server = Server::start();
    let gpg = Gpg::new("vendor");
    let key = lab.dir.path().join("vendor.asc");
    gpg.export(&key);
    publish_flatcar(&server, &gpg, "4081.2.0");
    set_current(&server, "4081.2.0");
    server.set(
        &format!("/amd64-usr/4081.2.0/{}", images_support::INITRD),
        Reply::Status(500),
    );
    let out = lab.mayu(&fetch_args(&server.url(), &key));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("answered 500"), "{stderr}");
    assert!(stderr.contains("nothing was installed"), "{stderr}");
    assert!(!lab.flatcar("4081.2.0").exists());
}

/// The line and column `mayu check` must name: the value of the node profile's `image:` key.
const IMAGE_AT: &str = ":10:12: ";

#[test]
fn check_refuses_a_missing_version_at_the_image_key() {
    let lab = Lab::new(&CONFIG.replace(
        "    image: flatcar\n",
        "    image: flatcar\n    image_version: 1.0.0\n",
    ));
    let out = lab.mayu(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let want = format!(
        "{}{IMAGE_AT}profile `node`: image `flatcar` has no version `1.0.0`",
        lab.config().display()
    );
    assert!(stderr.contains(&want), "{stderr}");
}

#[test]
fn check_refuses_an_unverified_version() {
    let lab = Lab::new(&CONFIG.replace(
        "    image: flatcar\n",
        "    image: flatcar\n    image_version: 5.0.0\n",
    ));
    std::fs::create_dir_all(lab.flatcar("5.0.0")).unwrap();
    std::fs::write(lab.flatcar("5.0.0").join("vmlinuz"), b"copied by hand").unwrap();
    let out = lab.mayu(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains(IMAGE_AT), "{stderr}");
    assert!(
        stderr.contains("image `flatcar` version `5.0.0` is not verified: no mayu-image.json"),
        "{stderr}"
    );

    // Unpinned, an image whose only version is unverified has nothing to boot.
    std::fs::write(lab.config(), CONFIG).unwrap();
    let out = lab.mayu(&["check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(IMAGE_AT), "{stderr}");
    assert!(
        stderr.contains("image `flatcar` has no verified version"),
        "{stderr}"
    );
}

#[test]
fn check_refuses_an_empty_image_folder_at_the_image_key() {
    let lab = Lab::new(CONFIG);
    let out = lab.mayu(&["check"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("image `flatcar` is empty"), "{stderr}");
    assert!(
        stderr.contains("run `mayu images fetch flatcar`"),
        "{stderr}"
    );
    let config = mayu::Config::load(&lab.config()).unwrap();
    let (errors, _) = mayu::images::check_profiles(&config);
    assert_eq!(errors.len(), 1, "{errors:?}");
    // Located at the profile's `image:` key.
    let text = std::fs::read_to_string(lab.config()).unwrap();
    let line = text
        .lines()
        .position(|l| l.trim_start().starts_with("image: flatcar"))
        .unwrap() as u64
        + 1;
    assert_eq!(errors[0].line, line, "{errors:?}");
}
