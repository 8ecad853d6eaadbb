//! The one-shot commands of the real `mayu` binary: check, render, import-mayu.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::path::Path;

use support::{check, copy_shipped, mayu, repo, succeeded};

/// A copy of the shipped config, templates and images in a temp folder.
fn lab(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_shipped(dir.path());
    let text = std::fs::read_to_string(repo().join("config.yaml")).unwrap();
    std::fs::write(dir.path().join("config.yaml"), edit(text)).unwrap();
    fill_tftproot(dir.path(), 0o644);
    // Stand-in local images, so the profiles have something to boot.
    for (image, kernel) in [
        ("flatcar", "flatcar_production_pxe.vmlinuz"),
        ("discovery", "vmlinuz"),
    ] {
        std::fs::write(dir.path().join("images").join(image).join(kernel), "kernel").unwrap();
    }
    dir
}

#[test]
fn check_accepts_the_shipped_config_once_its_images_are_there() {
    let dir = lab(|t| t);
    let out = check(dir.path(), None);
    let stdout = succeeded(&out);
    assert!(
        stdout.contains("profile    control-plane    quantity 3"),
        "{stdout}"
    );
}

#[test]
fn check_refuses_the_shipped_config_while_its_images_are_empty() {
    // A fresh clone provisions nothing until the images are fetched or built: check says so,
    // at each profile's `image:` line, with what to run.
    let dir = lab(|t| t);
    for image in ["flatcar", "discovery"] {
        for e in std::fs::read_dir(dir.path().join("images").join(image)).unwrap() {
            let e = e.unwrap();
            if !e.file_name().to_string_lossy().ends_with(".md") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
    let cfg = dir.path().join("config.yaml");
    let out = check(dir.path(), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let image_lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("image: flatcar"))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(image_lines.len(), 2, "{text}");
    for line in image_lines {
        assert!(
            stderr.contains(&format!("config.yaml:{line}:")),
            "line {line}: {stderr}"
        );
    }
    assert!(
        stderr.contains("run `mayu images fetch flatcar`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("run scripts/build-discovery.sh"),
        "{stderr}"
    );
}

#[test]
fn check_names_the_line_of_an_unknown_key() {
    let dir = lab(|t| t.replace("  domain: lab\n", "  domain: lab\n  colour: blue\n"));
    let cfg = dir.path().join("config.yaml");
    let out = check(dir.path(), None);
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
    let out = check(dir.path(), None);
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
        r#"{"Serial":"ABC1","MacAddresses":["00:16:3e:aa:bb:01"],"Profile":"worker","Hostname":"node-1","Cabinet":4,"MachineOnCabinet":17,"FleetMetadata":["role=worker"],"EtcdClusterToken":"tok-1","CoreOSVersion":"3815.2.5"}"#,
    )
    .unwrap();
    let cfg = dir.path().join("config.yaml");

    // A dry run says what each machine would be, and writes nothing.
    let out = mayu()
        .args(["import-mayu", "--dry-run", "--config"])
        .arg(&cfg)
        .arg(&cluster)
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    for want in [
        "would import abc1",
        "serial=ABC1",
        "macs=00:16:3e:aa:bb:01",
        "hostname=node-1",
        "profile=worker",
        "rack=4/17",
        "metadata=role=worker",
        "1 would be imported, 0 skipped (dry run: nothing written)",
    ] {
        assert!(stdout.contains(want), "no `{want}` in {stdout}");
    }
    let inventory = dir.path().join("inventory");
    let files = |d: &Path| {
        std::fs::read_dir(d)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(files(&inventory), 0, "a dry run writes no machine");
    assert!(!inventory.join("abc1.json").exists());

    let out = mayu()
        .args(["import-mayu", "--config"])
        .arg(&cfg)
        .arg(&cluster)
        .output()
        .unwrap();
    succeeded(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported abc1"));
    let file = std::fs::read_to_string(inventory.join("abc1.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert_eq!(m["metadata"], serde_json::json!(["role=worker"]));
    assert_eq!(m["etcd_token"], "tok-1");
    assert_eq!(m["versions"]["os"], "3815.2.5");

    let out = mayu()
        .args(["render", "--config"])
        .arg(&cfg)
        .args(["--mac", "00:16:3e:aa:bb:01", "--template", "ignition"])
        .output()
        .unwrap();
    succeeded(&out);
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

/// `tftproot/` of a lab with the two required boot programs, each with `mode`.
fn fill_tftproot(dir: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.join("tftproot");
    std::fs::create_dir_all(&root).unwrap();
    for f in ["undionly.kpxe", "ipxe.efi"] {
        std::fs::write(root.join(f), "a boot program").unwrap();
        std::fs::set_permissions(root.join(f), std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

#[test]
fn check_refuses_boot_programs_dnsmasq_cannot_serve() {
    let dir = lab(|t| t);
    fill_tftproot(dir.path(), 0o600);
    let out = check(dir.path(), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("tftproot:"), "{stderr}");
    assert!(stderr.contains("undionly.kpxe has mode 0600"), "{stderr}");
    assert!(stderr.contains("chmod a+r"), "{stderr}");

    fill_tftproot(dir.path(), 0o644);
    let out = check(dir.path(), None);
    succeeded(&out);
}

/// A folder standing in for Debian's `/usr/lib/ipxe` (`MAYU_IPXE_DIR`).
fn ipxe_source(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        std::fs::write(dir.path().join(f), format!("{f} from the package")).unwrap();
    }
    dir
}

#[test]
fn check_says_an_empty_tftproot_is_filled_at_start() {
    let dir = lab(|t| t);
    std::fs::remove_dir_all(dir.path().join("tftproot")).unwrap();
    let source = ipxe_source(&["undionly.kpxe", "ipxe.efi", "snponly.efi"]);
    let out = check(dir.path(), Some(source.path()));
    let stdout = succeeded(&out);
    assert!(
        stdout.contains(&format!(
            "lacks undionly.kpxe, ipxe.efi; mayu copies them from {} at start",
            source.path().display()
        )),
        "{stdout}"
    );
    // check itself changes nothing.
    assert!(!dir.path().join("tftproot").exists());
}

#[test]
fn check_refuses_missing_programs_nothing_can_fill() {
    let dir = lab(|t| t.replace("  domain: lab\n", "  domain: lab\n  uefi_snponly: true\n"));
    // The package copy has no snponly.efi: only the operator can provide it.
    let source = ipxe_source(&["undionly.kpxe", "ipxe.efi"]);
    let out = check(dir.path(), Some(source.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("tftproot: snponly.efi (UEFI x86-64 machines) is missing from"),
        "{stderr}"
    );
    assert!(stderr.contains("install Debian's ipxe package"), "{stderr}");

    // Without the folder at all, and nothing to fill it from.
    std::fs::remove_dir_all(dir.path().join("tftproot")).unwrap();
    let empty = ipxe_source(&[]);
    let out = check(dir.path(), Some(empty.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("tftproot: TFTP root"), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
}
