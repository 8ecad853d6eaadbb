//! `scripts/install-deps.sh` finds the Debian mirror the way apt reads its sources, on every
//! layout a fresh machine can have: stock Debian 12 (deb822 only, commented snapshot URLs, no
//! `sources.list`), a classic `sources.list`, both, a cloud image, Debian 13, none at all.
//! Each fixture under `tests/fixtures/apt/` is copied to a temp folder and the script adds the
//! backports source there (`--root DIR --sources-only`), exactly as it would under `/`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The fixture copied to a temp root, with the script run on it: (root, script stdout).
fn add_backports(fixture: &str) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("tests/fixtures/apt").join(fixture), dir.path());
    let out = Command::new("bash")
        .arg(repo().join("scripts/install-deps.sh"))
        .args(["--sources-only", "--root"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{fixture}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let added = dir
        .path()
        .join("etc/apt/sources.list.d/bookworm-backports.sources");
    (
        dir,
        added,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[test]
fn stock_bookworm_uses_the_live_uri_never_the_commented_snapshot() {
    let (_dir, added, _) = add_backports("bookworm-deb822");
    let text = std::fs::read_to_string(added).unwrap();
    // The commented-out and the `Enabled: no` backports stanzas do not count as present.
    assert_eq!(field(&text, "URIs"), "http://deb.debian.org/debian");
    assert_eq!(field(&text, "Suites"), "bookworm-backports");
    assert_eq!(
        field(&text, "Signed-By"),
        "/usr/share/keyrings/debian-archive-keyring.gpg"
    );
    assert!(!text.contains("snapshot"), "{text}");
}

#[test]
fn classic_sources_list_gives_its_mirror() {
    let (_dir, added, out) = add_backports("classic");
    let text = std::fs::read_to_string(added).unwrap();
    assert_eq!(field(&text, "URIs"), "http://ftp.de.debian.org/debian");
    assert!(out.contains("added bookworm-backports from http://ftp.de.debian.org/debian"));
}

#[test]
fn a_live_backports_line_is_respected() {
    // deb822 Debian source plus a one-line backports entry and an unrelated repository.
    let (_dir, added, out) = add_backports("both");
    assert!(!added.exists(), "backports added twice: {out}");
}

#[test]
fn a_cloud_image_with_backports_in_its_stanza_is_left_alone() {
    let (_dir, added, _) = add_backports("bookworm-cloud");
    assert!(!added.exists());
}

#[test]
fn trixie_needs_no_backports() {
    let (_dir, added, _) = add_backports("trixie");
    assert!(!added.exists());
}

#[test]
fn no_sources_at_all_falls_back_to_debs_own_mirror() {
    let (_dir, added, _) = add_backports("empty");
    let text = std::fs::read_to_string(added).unwrap();
    assert_eq!(field(&text, "URIs"), "http://deb.debian.org/debian");
}

/// `apt-sources.sh` alone, on each layout: the mirror and keyring it reports.
#[test]
fn mirror_detection_on_every_layout() {
    let cases = [
        (
            "bookworm-deb822",
            "bookworm",
            Some("http://deb.debian.org/debian\t/usr/share/keyrings/debian-archive-keyring.gpg"),
        ),
        (
            "classic",
            "bookworm",
            Some("http://ftp.de.debian.org/debian/\t"),
        ),
        (
            "both",
            "bookworm",
            Some(
                "http://mirror.example.org/debian/\t/usr/share/keyrings/debian-archive-keyring.gpg",
            ),
        ),
        // An inline key block is not a keyring file: no Signed-By path.
        (
            "bookworm-cloud",
            "bookworm",
            Some("mirror+file:///etc/apt/mirrors/debian.list\t"),
        ),
        (
            "trixie",
            "trixie",
            Some("http://deb.debian.org/debian\t/usr/share/keyrings/debian-archive-keyring.pgp"),
        ),
        ("trixie", "bookworm", None),
        ("empty", "bookworm", None),
    ];
    for (fixture, codename, want) in cases {
        let out = Command::new("bash")
            .arg(repo().join("scripts/apt-sources.sh"))
            .arg("--root")
            .arg(repo().join("tests/fixtures/apt").join(fixture))
            .args(["mirror", codename])
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&out.stdout);
        match want {
            Some(w) => {
                assert!(out.status.success(), "{fixture}: {got}");
                assert_eq!(got.trim_end_matches('\n'), w, "{fixture}");
            }
            None => assert_eq!(out.status.code(), Some(1), "{fixture}: {got}"),
        }
    }
}
