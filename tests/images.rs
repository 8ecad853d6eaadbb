//! `mayu images fetch` against a fake vendor on loopback, signed in the test with a throwaway
//! key: good downloads land verified; tampered, badly signed, truncated and failed downloads
//! leave nothing under the final name and say why; a crashed run's temp folder is swept; the
//! assets URL and route follow the chosen version.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod images_support;
mod support;

use std::path::Path;
use std::sync::Arc;

use images_support::{have, publish_flatcar, set_current, temp_folders, Gpg, Reply, Server};
use mayu::engine::{Edit, Registration};
use mayu::images::fetch::{fetch, FetchError, FetchRequest, Outcome, Vendor};
use mayu::images::{version_state, Record, VersionState, RECORD};
use sha2::Digest;

fn tools() -> bool {
    have("gpg") && have("gpgv")
}

fn request(server: &Server, key: &Path, version: Option<&str>) -> FetchRequest {
    FetchRequest {
        vendor: Vendor::Flatcar,
        channel: "stable".into(),
        version: version.map(str::to_string),
        mirror: Some(server.url()),
        key: Some(key.to_path_buf()),
        disk_image: false,
    }
}

struct Setup {
    dir: tempfile::TempDir,
    server: Server,
    gpg: Gpg,
    key: std::path::PathBuf,
}

impl Setup {
    /// A fake vendor on loopback and a signing key; `None` (the test does not run) without gpg.
    fn new() -> Option<Setup> {
        if !tools() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start();
        let gpg = Gpg::new("vendor");
        let key = dir.path().join("vendor.asc");
        gpg.export(&key);
        Some(Setup {
            dir,
            server,
            gpg,
            key,
        })
    }

    /// Flatcar 4081.2.0 published and current: its kernel and initrd.
    fn publish(&self) -> (Vec<u8>, Vec<u8>) {
        self.publish_signed_by(&self.gpg)
    }

    /// [`Setup::publish`], signed with `gpg`'s key.
    fn publish_signed_by(&self, gpg: &Gpg) -> (Vec<u8>, Vec<u8>) {
        let files = publish_flatcar(&self.server, gpg, "4081.2.0");
        set_current(&self.server, "4081.2.0");
        files
    }

    /// Serves `reply` for `file` of release 4081.2.0.
    fn serve(&self, file: &str, reply: Reply) {
        self.server
            .set(&format!("/amd64-usr/4081.2.0/{file}"), reply);
    }

    fn images(&self) -> std::path::PathBuf {
        self.dir.path().join("images")
    }

    async fn fetch(&self, version: Option<&str>) -> Result<Outcome, FetchError> {
        fetch(
            &self.images(),
            &request(&self.server, &self.key, version),
            &mut |_| {},
        )
        .await
    }

    /// A fetch that fails, says each of `words` and lands nothing.
    async fn refused_saying(&self, words: &[&str]) {
        let err = self.fetch(None).await.unwrap_err().to_string();
        for word in words {
            assert!(err.contains(word), "{err}");
        }
        self.assert_nothing_landed("4081.2.0");
    }

    /// Nothing under the final name, no temp folder left.
    fn assert_nothing_landed(&self, version: &str) {
        let image = self.images().join("flatcar");
        assert!(!image.join(version).exists(), "{version} landed");
        assert!(
            temp_folders(&image).is_empty(),
            "{:?}",
            temp_folders(&image)
        );
    }
}

fn sha(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

#[tokio::test]
async fn a_good_flatcar_release_lands_verified_and_recorded() {
    let Some(s) = Setup::new() else { return };
    let (kernel, initrd) = s.publish();

    let Outcome::Fetched { record, dir } = s.fetch(None).await.unwrap() else {
        panic!("expected a fetch");
    };
    assert_eq!(dir, s.images().join("flatcar/4081.2.0"));
    assert_eq!(
        std::fs::read(dir.join(images_support::KERNEL)).unwrap(),
        kernel
    );
    assert_eq!(
        std::fs::read(dir.join(images_support::INITRD)).unwrap(),
        initrd
    );
    assert!(dir
        .join(format!("{}.sig", images_support::KERNEL))
        .is_file());
    let on_disk: Record =
        serde_json::from_slice(&std::fs::read(dir.join(RECORD)).unwrap()).unwrap();
    assert_eq!(on_disk, record);
    assert_eq!(record.name, "flatcar");
    assert_eq!(record.version, "4081.2.0");
    assert_eq!(record.channel, "stable");
    assert!(record.verified);
    assert_eq!(record.verified_by, s.gpg.fingerprint);
    let k = &record.files[0];
    assert_eq!(k.role, "kernel");
    assert_eq!(k.sha256, sha(&kernel));
    assert_eq!(k.size, kernel.len() as u64);
    assert_eq!(
        k.url,
        format!(
            "{}/amd64-usr/4081.2.0/{}",
            s.server.url(),
            images_support::KERNEL
        )
    );
    assert_eq!(record.files[1].sha256, sha(&initrd));
    assert_eq!(
        version_state(&dir),
        VersionState::Verified {
            by: s.gpg.fingerprint.clone()
        }
    );
    // Only what the record names, its signatures and the record itself: no scratch files.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "flatcar_production_pxe.vmlinuz",
            "flatcar_production_pxe.vmlinuz.sig",
            "flatcar_production_pxe_image.cpio.gz",
            "flatcar_production_pxe_image.cpio.gz.sig",
            RECORD
        ]
    );
    assert!(temp_folders(&s.images().join("flatcar")).is_empty());

    // Asking again changes nothing.
    assert!(matches!(
        s.fetch(Some("4081.2.0")).await.unwrap(),
        Outcome::AlreadyThere { .. }
    ));
}

#[tokio::test]
async fn a_tampered_file_leaves_nothing_and_says_bad_signature() {
    let Some(s) = Setup::new() else { return };
    let (_, mut initrd) = s.publish();
    initrd[1000] ^= 0xff;
    s.serve(images_support::INITRD, Reply::Body(initrd));
    s.refused_saying(&[images_support::INITRD, "bad signature"])
        .await;
}

#[tokio::test]
async fn a_signature_by_another_key_is_refused() {
    let Some(s) = Setup::new() else { return };
    s.publish_signed_by(&Gpg::new("impostor"));
    s.refused_saying(&["not in the trusted keyring"]).await;
}

#[tokio::test]
async fn garbage_for_a_signature_is_refused() {
    let Some(s) = Setup::new() else { return };
    s.publish();
    s.serve(
        &format!("{}.sig", images_support::KERNEL),
        Reply::Body(b"this is no signature".to_vec()),
    );
    s.refused_saying(&["not a valid signature"]).await;
}

#[tokio::test]
async fn without_a_key_the_shipped_flatcar_key_must_have_signed() {
    let Some(s) = Setup::new() else { return };
    s.publish();
    let mut req = request(&s.server, &s.key, None);
    req.key = None;
    let err = fetch(&s.images(), &req, &mut |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not in the trusted keyring"), "{err}");
    s.assert_nothing_landed("4081.2.0");
}

#[tokio::test]
async fn a_truncated_transfer_leaves_nothing_and_says_so() {
    let Some(s) = Setup::new() else { return };
    let (_, initrd) = s.publish();
    s.serve(
        images_support::INITRD,
        Reply::Short {
            body: initrd[..100_000].to_vec(),
            claimed: initrd.len(),
        },
    );
    let err = s.fetch(None).await.unwrap_err();
    assert!(matches!(err, FetchError::Truncated { .. }), "{err}");
    let err = err.to_string();
    assert!(err.contains("broke off after"), "{err}");
    assert!(err.contains(&initrd.len().to_string()), "{err}");
    s.assert_nothing_landed("4081.2.0");
}

#[tokio::test]
async fn a_server_error_leaves_nothing_and_names_the_status() {
    let Some(s) = Setup::new() else { return };
    s.publish();
    s.serve(images_support::KERNEL, Reply::Status(500));
    s.refused_saying(&["answered 500", images_support::KERNEL])
        .await;
}

#[tokio::test]
async fn a_version_that_is_no_folder_name_is_refused() {
    let Some(s) = Setup::new() else { return };
    s.server.set(
        "/amd64-usr/current/version.txt",
        Reply::Body(b"FLATCAR_VERSION=../../etc\n".to_vec()),
    );
    let err = s.fetch(None).await.unwrap_err();
    assert!(matches!(err, FetchError::BadVersion(_)), "{err}");
    assert!(!s.images().join("etc").exists());
}

#[tokio::test]
async fn a_crashed_runs_temp_folder_is_removed_by_the_next_run() {
    let Some(s) = Setup::new() else { return };
    s.publish();
    // As a killed fetch leaves it: pid 999999999 cannot be alive (above Linux's pid_max).
    let crashed = s.images().join("flatcar/.fetch-999999999-0-4081.2.0");
    std::fs::create_dir_all(&crashed).unwrap();
    std::fs::write(crashed.join(images_support::KERNEL), b"half a kernel").unwrap();
    assert!(matches!(
        s.fetch(None).await.unwrap(),
        Outcome::Fetched { .. }
    ));
    assert!(!crashed.exists());
    assert!(temp_folders(&s.images().join("flatcar")).is_empty());
    assert!(version_state(&s.images().join("flatcar/4081.2.0")).is_verified());
}

#[tokio::test]
async fn an_unverified_folder_of_the_same_name_is_replaced() {
    let Some(s) = Setup::new() else { return };
    let (kernel, _) = s.publish();
    let by_hand = s.images().join("flatcar/4081.2.0");
    std::fs::create_dir_all(&by_hand).unwrap();
    std::fs::write(by_hand.join(images_support::KERNEL), b"copied by hand").unwrap();
    assert!(!version_state(&by_hand).is_verified());
    s.fetch(None).await.unwrap();
    assert_eq!(
        std::fs::read(by_hand.join(images_support::KERNEL)).unwrap(),
        kernel
    );
    assert!(version_state(&by_hand).is_verified());
    assert!(temp_folders(&s.images().join("flatcar")).is_empty());
}

/// A Fedora CoreOS stream (`streams/<channel>.json`) whose artifacts live on the same server.
fn publish_fcos(s: &Setup, release: &str, wrong_sha: bool) -> Vec<Vec<u8>> {
    let base = format!("/prod/streams/stable/builds/{release}/x86_64");
    let names = [
        format!("fedora-coreos-{release}-live-kernel-x86_64"),
        format!("fedora-coreos-{release}-live-initramfs.x86_64.img"),
        format!("fedora-coreos-{release}-live-rootfs.x86_64.img"),
    ];
    let mut blobs = Vec::new();
    let mut pxe = serde_json::Map::new();
    for (i, (key, name)) in ["kernel", "initramfs", "rootfs"]
        .iter()
        .zip(names.iter())
        .enumerate()
    {
        let data = images_support::blob(i as u8 + 7, 100_000 + i * 50_000);
        let path = format!("{base}/{name}");
        s.server.set(&path, Reply::Body(data.clone()));
        s.server
            .set(&format!("{path}.sig"), Reply::Body(s.gpg.sign(&data)));
        let sha256 = if wrong_sha && i == 1 {
            sha(b"something else")
        } else {
            sha(&data)
        };
        pxe.insert(
            key.to_string(),
            serde_json::json!({
                "location": format!("{}{path}", s.server.url()),
                "signature": format!("{}{path}.sig", s.server.url()),
                "sha256": sha256,
            }),
        );
        blobs.push(data);
    }
    let stream = serde_json::json!({
        "stream": "stable",
        "architectures": { "x86_64": { "artifacts": { "metal": {
            "release": release,
            "formats": { "pxe": pxe }
        }}}}
    });
    s.server.set(
        "/streams/stable.json",
        Reply::Body(serde_json::to_vec(&stream).unwrap()),
    );
    blobs
}

fn fcos_request(s: &Setup) -> FetchRequest {
    FetchRequest {
        vendor: Vendor::FedoraCoreos,
        ..request(&s.server, &s.key, None)
    }
}

#[tokio::test]
async fn a_fedora_coreos_release_is_checked_by_sha256_and_signature() {
    let Some(s) = Setup::new() else { return };
    let blobs = publish_fcos(&s, "42.20250512.3.0", false);
    let Outcome::Fetched { record, dir } = fetch(&s.images(), &fcos_request(&s), &mut |_| {})
        .await
        .unwrap()
    else {
        panic!("expected a fetch");
    };
    assert_eq!(dir, s.images().join("fedora-coreos/42.20250512.3.0"));
    assert_eq!(record.verified_by, s.gpg.fingerprint);
    let roles: Vec<&str> = record.files.iter().map(|f| f.role.as_str()).collect();
    assert_eq!(roles, ["kernel", "initrd", "rootfs"]);
    for (f, data) in record.files.iter().zip(blobs.iter()) {
        assert!(f.sha256_published);
        assert_eq!(f.sha256, sha(data));
        assert_eq!(&std::fs::read(dir.join(&f.name)).unwrap(), data);
    }
    assert!(dir.join("fedora-coreos-live-kernel-x86_64").is_file());
}

#[tokio::test]
async fn a_fedora_coreos_checksum_mismatch_leaves_nothing() {
    let Some(s) = Setup::new() else { return };
    publish_fcos(&s, "42.20250512.3.0", true);
    let err = fetch(&s.images(), &fcos_request(&s), &mut |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("sha256 is"), "{err}");
    assert!(err.contains("initramfs"), "{err}");
    let image = s.images().join("fedora-coreos");
    assert!(!image.join("42.20250512.3.0").exists());
    assert!(temp_folders(&image).is_empty());
}

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

/// A mayu folder whose `node` profile boots flatcar, with two fetched versions.
async fn lab_with_two_versions(s: &Setup) -> mayu::Config {
    let root = s.dir.path();
    std::fs::create_dir_all(root.join("templates")).unwrap();
    std::fs::write(
        root.join("templates/node.ipxe"),
        "#!ipxe\nkernel {{ urls.assets }}/flatcar_production_pxe.vmlinuz\nboot\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("images/discovery")).unwrap();
    std::fs::write(root.join("images/discovery/vmlinuz"), b"local kernel").unwrap();
    for v in ["4081.2.0", "4152.0.0"] {
        publish_flatcar(&s.server, &s.gpg, v);
        s.fetch(Some(v)).await.unwrap();
    }
    std::fs::write(root.join("config.yaml"), CONFIG).unwrap();
    mayu::Config::load(&root.join("config.yaml")).unwrap()
}

#[tokio::test]
async fn templates_and_the_asset_route_follow_the_chosen_version() {
    let Some(s) = Setup::new() else { return };
    let config = lab_with_two_versions(&s).await;
    let engine = mayu::Engine::open(config.clone()).unwrap();
    let reg = |mac: &str| Registration {
        mac: Some(mac.parse().unwrap()),
        uuid: None,
        serial: None,
        arch: None,
        ip: None,
    };
    let a = engine
        .register(reg("00:16:3e:00:00:01"), mayu::machine::Phase::Ipxe)
        .unwrap();
    let b = engine
        .register(reg("00:16:3e:00:00:02"), mayu::machine::Phase::Ipxe)
        .unwrap();
    let c = engine
        .register(reg("00:16:3e:00:00:03"), mayu::machine::Phase::Ipxe)
        .unwrap();
    for m in [&a, &b] {
        engine.assign(m.id.as_str(), "node", "test", false).unwrap();
    }
    engine.assign(c.id.as_str(), "lab", "test", false).unwrap();
    let mut edit = Edit::default();
    edit.overrides
        .insert("image_version".into(), Some("4081.2.0".into()));
    engine.edit(b.id.as_str(), "test", edit).unwrap();

    let templates = mayu::templates::Templates::load(&config).unwrap();
    let boot: std::net::SocketAddr = "127.0.0.1:4081".parse().unwrap();
    let render = |id: &mayu::machine::MachineId| {
        let m = engine.get(id).unwrap();
        templates
            .render(boot, &m, mayu::templates::Kind::Ipxe)
            .unwrap()
    };
    let base = "http://127.0.0.1:4081/assets";
    assert!(
        render(&a.id).contains(&format!(
            "{base}/flatcar/4152.0.0/flatcar_production_pxe.vmlinuz"
        )),
        "{}",
        render(&a.id)
    );
    assert!(
        render(&b.id).contains(&format!(
            "{base}/flatcar/4081.2.0/flatcar_production_pxe.vmlinuz"
        )),
        "{}",
        render(&b.id)
    );
    // A profile's own pin wins over the newest; a machine's pin wins over the profile's.
    let mut pinned = config.clone();
    pinned.profiles[0].image_version = Some("4081.2.0".into());
    let (a_now, b_now) = (engine.get(&a.id).unwrap(), engine.get(&b.id).unwrap());
    assert_eq!(
        mayu::images::asset_dir(&pinned, &pinned.profiles[0], &a_now.overrides),
        "flatcar/4081.2.0"
    );
    pinned.profiles[0].image_version = Some("4152.0.0".into());
    assert_eq!(
        mayu::images::asset_dir(&pinned, &pinned.profiles[0], &b_now.overrides),
        "flatcar/4081.2.0"
    );
    assert!(
        render(&c.id).contains(&format!("{base}/discovery/flatcar_production_pxe.vmlinuz")),
        "{}",
        render(&c.id)
    );

    // Over a real loopback listener: a verified version is served, an unverified one is not.
    std::fs::create_dir_all(s.images().join("flatcar/9.9.9")).unwrap();
    std::fs::write(s.images().join("flatcar/9.9.9/vmlinuz"), b"unsigned").unwrap();
    let state = mayu::boot::BootState {
        engine: engine.clone(),
        templates: Arc::new(templates),
        boot_addr: boot,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, mayu::boot::router(state))
            .await
            .unwrap();
    });
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("http://{addr}/assets/{path}")).send();
    let ok = get("flatcar/4081.2.0/flatcar_production_pxe.vmlinuz")
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let served = ok.bytes().await.unwrap();
    assert_eq!(
        served.as_ref(),
        std::fs::read(
            s.images()
                .join("flatcar/4081.2.0/flatcar_production_pxe.vmlinuz")
        )
        .unwrap()
    );
    let refused = get("flatcar/9.9.9/vmlinuz").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("not verified"));
    assert_eq!(get("flatcar/1.0.0/vmlinuz").await.unwrap().status(), 404);
    assert_eq!(get("discovery/vmlinuz").await.unwrap().status(), 200);
    server.abort();
}

#[tokio::test]
async fn check_finds_missing_and_unverified_versions_at_the_image_key() {
    let Some(s) = Setup::new() else { return };
    let mut config = lab_with_two_versions(&s).await;
    let (errors, _) = mayu::images::check_profiles(&config);
    assert!(errors.is_empty(), "{errors:?}");

    config.profiles[0].image_version = Some("1.0.0".into());
    let (errors, _) = mayu::images::check_profiles(&config);
    assert_eq!(errors.len(), 1, "{errors:?}");
    // The `image:` key of the first profile: line 10, column 12 of CONFIG.
    assert_eq!((errors[0].line, errors[0].column), (10, 12));
    assert!(
        errors[0].message.contains("has no version `1.0.0`"),
        "{}",
        errors[0]
    );

    std::fs::write(
        s.images()
            .join("flatcar/4152.0.0/flatcar_production_pxe.vmlinuz"),
        b"changed after verification",
    )
    .unwrap();
    config.profiles[0].image_version = Some("4152.0.0".into());
    let (errors, _) = mayu::images::check_profiles(&config);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].message.contains("is not verified"),
        "{}",
        errors[0]
    );
}

#[tokio::test]
async fn start_warns_about_machines_pinned_to_a_missing_or_unverified_version() {
    let Some(s) = Setup::new() else { return };
    let config = lab_with_two_versions(&s).await;
    std::fs::create_dir_all(s.images().join("flatcar/5.0.0")).unwrap();
    let engine = mayu::Engine::open(config.clone()).unwrap();
    let mut ids = Vec::new();
    for (mac, version) in [
        ("00:16:3e:00:00:01", "4081.2.0"),
        ("00:16:3e:00:00:02", "1.0.0"),
        ("00:16:3e:00:00:03", "5.0.0"),
    ] {
        let reg = Registration {
            mac: Some(mac.parse().unwrap()),
            uuid: None,
            serial: None,
            arch: None,
            ip: None,
        };
        let m = engine.register(reg, mayu::machine::Phase::Ipxe).unwrap();
        engine.assign(m.id.as_str(), "node", "test", false).unwrap();
        let mut edit = Edit::default();
        edit.overrides
            .insert("image_version".into(), Some(version.into()));
        engine.edit(m.id.as_str(), "test", edit).unwrap();
        ids.push(m.id);
    }
    let warnings = mayu::images::startup_warnings(&config, &engine.list());
    let about = |id: &mayu::machine::MachineId| {
        warnings
            .iter()
            .filter(|w| w.starts_with(&format!("machine {id} ")))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(about(&ids[0]).is_empty(), "{warnings:?}");
    assert!(
        about(&ids[1])
            .iter()
            .any(|w| w.contains("pins flatcar/1.0.0, which is not there")),
        "{warnings:?}"
    );
    assert!(
        about(&ids[2])
            .iter()
            .any(|w| w.contains("pins flatcar/5.0.0, which is not verified")),
        "{warnings:?}"
    );
    // The unverified folder is named once more as a folder that is never served.
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("flatcar/5.0.0 is not verified")),
        "{warnings:?}"
    );
}

#[test]
fn the_shipped_keys_dearmor_as_gpg_does_and_have_the_pinned_fingerprints() {
    if !have("gpg") {
        return;
    }
    use mayu::images::verify;
    for (text, fingerprints) in [
        (verify::FLATCAR_KEY, vec![verify::FLATCAR_FINGERPRINT]),
        (verify::FEDORA_KEYS, verify::FEDORA_FINGERPRINTS.to_vec()),
    ] {
        let home = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = support::with_stdin(
                std::process::Command::new("gpg")
                    .arg("--homedir")
                    .arg(home.path())
                    .arg("--batch")
                    .args(args)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null()),
                text.as_bytes(),
            )
            .unwrap();
            assert!(out.status.success());
            out.stdout
        };
        assert_eq!(verify::dearmor(text).unwrap(), run(&["--dearmor"]));
        let listing = String::from_utf8(run(&["--with-colons", "--show-keys"])).unwrap();
        // The fingerprint line right after each primary key (`pub`) line.
        let lines: Vec<&str> = listing.lines().collect();
        let primaries: Vec<String> = lines
            .windows(2)
            .filter(|w| w[0].starts_with("pub:") && w[1].starts_with("fpr:"))
            .map(|w| {
                w[1].trim_start_matches("fpr:")
                    .trim_matches(':')
                    .to_string()
            })
            .collect();
        assert_eq!(primaries, fingerprints);
    }
}

#[test]
fn a_pin_must_be_a_version_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(dir.path().join("templates/node.ipxe"), "#!ipxe\n").unwrap();
    std::fs::create_dir_all(dir.path().join("images/flatcar")).unwrap();
    std::fs::create_dir_all(dir.path().join("images/discovery")).unwrap();
    std::fs::write(dir.path().join("config.yaml"), CONFIG).unwrap();
    let config = mayu::Config::load(&dir.path().join("config.yaml")).unwrap();
    let engine = mayu::Engine::open(config).unwrap();
    let reg = Registration {
        mac: Some("00:16:3e:00:00:09".parse().unwrap()),
        uuid: None,
        serial: None,
        arch: None,
        ip: None,
    };
    let m = engine.register(reg, mayu::machine::Phase::Ipxe).unwrap();
    for bad in [
        serde_json::json!("../../etc"),
        serde_json::json!(".fetch-1"),
        serde_json::json!(4081),
    ] {
        let mut edit = Edit::default();
        edit.overrides
            .insert("image_version".into(), Some(bad.clone()));
        let err = engine.edit(m.id.as_str(), "test", edit).unwrap_err();
        assert!(err.to_string().contains("must be a version name"), "{err}");
    }
    assert!(engine.get(&m.id).unwrap().overrides.is_empty());
    let mut edit = Edit::default();
    edit.overrides
        .insert("image_version".into(), Some("4081.2.0".into()));
    engine.edit(m.id.as_str(), "test", edit).unwrap();
    assert_eq!(
        mayu::images::pinned_version(&engine.get(&m.id).unwrap().overrides).as_deref(),
        Some("4081.2.0")
    );
}

#[tokio::test]
async fn a_binary_key_file_works_as_well_as_an_armored_one() {
    let Some(s) = Setup::new() else { return };
    s.publish();
    let binary = s.dir.path().join("vendor.gpg");
    let out = std::process::Command::new("gpg")
        .arg("--homedir")
        .arg(s.gpg.home.path())
        .args(["--batch", "--export", &s.gpg.fingerprint])
        .output()
        .unwrap();
    assert!(out.status.success() && !out.stdout.is_empty());
    std::fs::write(&binary, out.stdout).unwrap();
    let Outcome::Fetched { record, .. } =
        fetch(&s.images(), &request(&s.server, &binary, None), &mut |_| {})
            .await
            .unwrap()
    else {
        panic!("expected a fetch");
    };
    assert_eq!(record.verified_by, s.gpg.fingerprint);
}

/// Serves `body` as release 4081.2.0's disk image, signed over `signed`, and fetches the
/// release with its disk image.
async fn fetch_disk_image(s: &Setup, body: Vec<u8>, signed: &[u8]) -> Result<Outcome, FetchError> {
    let name = mayu::images::fetch::FLATCAR_DISK_IMAGE;
    s.serve(name, Reply::Body(body));
    s.serve(&format!("{name}.sig"), Reply::Body(s.gpg.sign(signed)));
    let req = FetchRequest {
        disk_image: true,
        ..request(&s.server, &s.key, None)
    };
    fetch(&s.images(), &req, &mut |_| {}).await
}

#[tokio::test]
async fn the_flatcar_disk_image_for_flatcar_install_comes_verified_when_asked() {
    let Some(s) = Setup::new() else { return };
    s.publish();
    let disk: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let name = mayu::images::fetch::FLATCAR_DISK_IMAGE;
    fetch_disk_image(&s, disk.clone(), &disk).await.unwrap();
    let dir = s.images().join("flatcar/4081.2.0");
    // Where flatcar-install -b <assets>/flatcar looks: <version>/<image> and its signature.
    assert_eq!(std::fs::read(dir.join(name)).unwrap(), disk);
    assert!(dir.join(format!("{name}.sig")).is_file());

    // A tampered disk image lands nothing, like any other file.
    let s = Setup::new().unwrap();
    s.publish();
    let mut bad = disk.clone();
    bad[10] ^= 1;
    let err = fetch_disk_image(&s, bad, &disk)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(name), "{err}");
    s.assert_nothing_landed("4081.2.0");
}
