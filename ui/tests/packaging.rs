//! What the Debian package takes from `mayu` (scripts/build-deb.sh): completions and man pages
//! generated from the clap definition, and the packaged config (`packaging/debian/config.yaml`)
//! passing `mayu check` with its paths moved into a temp folder. `scripts/test-package.sh`
//! checks the package itself, installed.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use support::{check, mayu, repo, succeeded};

#[test]
fn completions_name_every_visible_subcommand_and_not_the_hidden_ones() {
    for shell in ["bash", "zsh", "fish"] {
        let out = succeeded(&mayu().args(["completions", shell]).output().unwrap());
        for sub in [
            "check",
            "render",
            "import-mayu",
            "images",
            "config",
            "headless",
        ] {
            assert!(out.contains(sub), "{shell} completions lack {sub}:\n{out}");
        }
    }
    let help = succeeded(&mayu().arg("--help").output().unwrap());
    assert!(
        !help.contains("completions") && !help.contains("\n  man"),
        "{help}"
    );
}

#[test]
fn man_pages_cover_every_visible_subcommand() {
    let page = succeeded(&mayu().arg("man").output().unwrap());
    assert!(page.contains(".TH mayu 1"), "{page}");
    assert!(page.contains("headless"), "{page}");

    let dir = tempfile::tempdir().unwrap();
    succeeded(
        &mayu()
            .args(["man", "--out-dir"])
            .arg(dir.path())
            .output()
            .unwrap(),
    );
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "mayu-check.1",
            "mayu-images-fetch.1",
            "mayu-images-gc.1",
            "mayu-images-list.1",
            "mayu-images.1",
            "mayu-import-mayu.1",
            "mayu-inventory-pull.1",
            "mayu-inventory-push.1",
            "mayu-inventory.1",
            "mayu-render.1",
            "mayu.1"
        ]
    );
}

#[test]
fn the_packaged_config_passes_check() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().display().to_string();
    let text = std::fs::read_to_string(repo().join("packaging/debian/config.yaml")).unwrap();
    // Every path the package uses, and only those, moved into the temp folder.
    let moved = text
        .replace(
            "/usr/share/mayu/templates",
            &repo().join("templates").display().to_string(),
        )
        .replace("/var/lib/mayu", &format!("{base}/lib"))
        .replace("/var/log/mayu", &format!("{base}/log"));
    for line in moved.lines().filter(|l| !l.trim_start().starts_with('#')) {
        assert!(
            !line.contains(" /") || line.contains(&base) || line.contains("/templates"),
            "a path the test did not move: {line}"
        );
    }
    std::fs::write(dir.path().join("config.yaml"), moved).unwrap();
    // Debian's ipxe, as the package's Depends makes sure of.
    let ipxe = dir.path().join("ipxe");
    std::fs::create_dir(&ipxe).unwrap();
    for f in ["undionly.kpxe", "ipxe.efi", "snponly.efi"] {
        std::fs::write(ipxe.join(f), "a boot program").unwrap();
        std::fs::set_permissions(ipxe.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = succeeded(&check(dir.path(), Some(&ipxe)));
    assert!(out.contains("config.yaml: ok"), "{out}");
    assert!(out.contains("Manual"), "{out}");
}
