//! The shipped cloud-config passes the validator users run, `cloud-init schema` (Debian's
//! `cloud-init`), rendered for a fixture machine with and without SSH keys; and the shipped
//! Ignition templates pass Ignition's own rules, while a relative path is refused.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::process::Command;

use mayu::templates::{set::fixture, Kind, Templates};
use support::Lab;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDk5mR1mCBSt6Y6nZmnf0Y0h6m1p+3cFh0m3n2XbkS6Q ops@rack";

fn cloud_init_present() -> bool {
    let found = Command::new("cloud-init")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cloud-init (Debian package cloud-init) is required in CI"
        );
        eprintln!("not run: cloud-init is not installed (apt-get install cloud-init)");
    }
    found
}

fn render(lab: &Lab, profile: &str, kind: Kind) -> Result<String, String> {
    let config = lab.config();
    let templates = Templates::load(&config).map_err(|e| format!("{e:?}"))?;
    let m = fixture(config.profile(profile).unwrap());
    templates
        .render("127.0.0.1:4081".parse().unwrap(), &m, kind)
        .map_err(|e| e.to_string())
}

fn schema(lab: &Lab, text: &str) -> (bool, String) {
    let file = lab.path().join("rendered-cloud-config.yaml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn shipped_cloud_config_passes_cloud_init_schema_without_and_with_keys() {
    if !cloud_init_present() {
        return;
    }
    let without = Lab::new(&[]);
    let text = render(&without, "worker", Kind::CloudConfig).unwrap();
    let (ok, report) = schema(&without, &text);
    assert!(ok, "{report}\n---\n{text}");
    assert!(report.contains("Valid cloud-config"), "{report}");

    let with = Lab::new(&[(
        "ssh_authorized_keys: []",
        &format!("ssh_authorized_keys: [\"{KEY}\"]"),
    )]);
    let text = render(&with, "worker", Kind::CloudConfig).unwrap();
    assert!(text.contains(KEY), "{text}");
    let (ok, report) = schema(&with, &text);
    assert!(ok, "{report}\n---\n{text}");
}

#[test]
fn cloud_init_schema_catches_what_we_would_have_served() {
    // The validator is live: the form the old template emitted is refused by it.
    if !cloud_init_present() {
        return;
    }
    let lab = Lab::new(&[]);
    let (ok, report) = schema(&lab, "#cloud-config\nssh_authorized_keys: []\n");
    assert!(!ok, "{report}");
    assert!(report.contains("too short"), "{report}");
}

#[test]
fn shipped_ignition_passes_ignitions_rules_and_a_relative_path_is_refused() {
    let lab = Lab::new(&[]);
    for profile in ["control-plane", "worker"] {
        let json = render(&lab, profile, Kind::Ignition).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let violations = mayu::templates::ignition::validate(&value);
        assert!(violations.is_empty(), "{profile}: {violations:?}");
    }
    // A template writing a relative path no longer loads: the last good set would keep serving.
    let snippet = lab.path().join("templates/snippets/ignition-common.yaml");
    let text = std::fs::read_to_string(&snippet).unwrap();
    assert!(text.contains("- path: /etc/hostname"), "{text}");
    std::fs::write(
        &snippet,
        text.replacen("- path: /etc/hostname", "- path: etc/hostname", 1),
    )
    .unwrap();
    let err = render(&lab, "worker", Kind::Ignition).unwrap_err();
    assert!(err.contains("path not absolute"), "{err}");
    assert!(err.contains("storage.files[0].path"), "{err}");
}
