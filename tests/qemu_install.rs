//! An honest lifecycle with install to disk.
//!
//! Through the router (no root needed): the shipped `control-plane` profile installs Flatcar with
//! flatcar-install and hands the installed system its own valid Ignition; `worker` boots live
//! every time; an installed machine of a `boot_from_disk` profile is handed `sanboot` and each
//! report from its disk is a "booted from disk" step.
//!
//! With a real QEMU BIOS machine (`install_to_disk_then_boot_from_disk`): a blank virtio disk,
//! the NIC's iPXE ROM, mayu's supervised dnsmasq and boot HTTP, all in a network namespace this
//! test creates. Power-on 1: iPXE boots the lab installer (images/installer, built by
//! `scripts/build-install-image.sh` from Debian packages), which partitions the disk, writes a
//! system that boots by itself (extlinux) with the machine's boot-complete token baked in,
//! tells mayu and reboots; iPXE is handed `sanboot` of the disk and the installed system reports
//! boot-complete and powers off. Power-on 2: network first again, mayu hands the running machine
//! `sanboot`, it boots from disk and reports in again: a "booted from disk" step, no installer.
//!
//! The QEMU test's prerequisites, `CI=true` and environment: `tests/support/qemu.rs`
//! (`MAYU_TEST_KEEP=1` keeps the disk too).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use mayu::boot::BootState;
use mayu::events::EventKind;
use mayu::machine::{Phase, State};
use mayu::templates::{set::finish, Kind, Templates};
use serde_json::Value;
use support::qemu::{
    self, boot_step, step, str_of, tail, Api, Guest, Journey, Lab, Needs, Step, ADDR, BOOT_PORT,
};
use support::Lab as Fixture;

// ---------------------------------------------------------------------------------------------
// Through the router.

async fn call(s: &BootState, method: &str, uri: &str) -> (StatusCode, String) {
    support::boot_call(s, method, uri, "").await
}

/// `data:,…` → its percent-decoded text.
fn data_url(source: &str) -> String {
    let enc = source.strip_prefix("data:,").expect("a data URL");
    let bytes = enc.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn unit<'a>(ign: &'a Value, name: &str) -> &'a str {
    ign["systemd"]["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .and_then(|u| u["contents"].as_str())
        .unwrap_or_else(|| panic!("no unit {name} in {ign:#}"))
}

fn file<'a>(ign: &'a Value, path: &str) -> &'a str {
    ign["storage"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .and_then(|f| f["contents"]["source"].as_str())
        .unwrap_or_else(|| panic!("no file {path} in {ign:#}"))
}

#[tokio::test]
async fn control_plane_installs_flatcar_and_the_installed_system_reports_in() {
    let lab = Fixture::new(&[(
        "templates_env:\n  ssh_authorized_keys: []",
        "templates_env:\n  ssh_authorized_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM0 op@lab\"]",
    )]);
    let s = lab.boot_state();
    call(&s, "GET", "/ipxe?mac=52:54:00:00:05:01&serial=CP1").await;
    s.engine.assign("cp1", "control-plane", "t", false).unwrap();
    let m = s.engine.find("cp1").unwrap();
    let (st, body) = call(&s, "GET", &format!("/ignition?id=cp1&token={}", m.token)).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let live: Value = serde_json::from_str(&body).unwrap();

    // The live system installs to disk from mayu's own image folder, tells mayu, reboots.
    let install = unit(&live, "mayu-install.service");
    assert!(
        install.contains(
            "ExecStart=/usr/bin/flatcar-install -d /dev/sda -i /opt/mayu/installed.ign -b http://10.77.0.1:4081/assets/flatcar\n"
        ),
        "{install}"
    );
    assert!(
        install.contains(&format!(
            "http://10.77.0.1:4081/installed?id=cp1&token={}",
            m.token
        )),
        "{install}"
    );
    assert!(install.contains("systemctl reboot"), "{install}");
    // It does not report boot-complete itself: the installed system does.
    let names: Vec<&str> = live["systemd"]["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["mayu-install.service"]);

    // The installed system's Ignition is valid and reports boot-complete on every boot.
    let installed = data_url(file(&live, "/opt/mayu/installed.ign"));
    let installed = finish(Kind::Ignition, installed).unwrap_or_else(|e| panic!("{e}"));
    let installed: Value = serde_json::from_str(&installed).unwrap();
    let report = unit(&installed, "mayu-boot-complete.service");
    assert!(
        report.contains(&format!(
            "\"http://10.77.0.1:4081/boot-complete?id=cp1&token={}\"",
            m.token
        )),
        "{report}"
    );
    assert!(!report.contains("ConditionPathExists"), "{report}");
    assert_eq!(
        installed["passwd"]["users"][0]["sshAuthorizedKeys"][0],
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM0 op@lab"
    );
    assert_eq!(data_url(file(&installed, "/etc/hostname")), "cp1");

    // The install disk follows discovery's facts, or an operator's override; a pinned release
    // is installed from its own version folder.
    s.engine
        .edit(
            "cp1",
            "t",
            mayu::engine::Edit {
                overrides: [
                    (
                        "install_disk".to_string(),
                        Some(Value::String("/dev/nvme0n1".into())),
                    ),
                    (
                        "image_version".to_string(),
                        Some(Value::String("4081.2.0".into())),
                    ),
                ]
                .into(),
                ..Default::default()
            },
        )
        .unwrap();
    let (_, body) = call(&s, "GET", &format!("/ignition?id=cp1&token={}", m.token)).await;
    let live: Value = serde_json::from_str(&body).unwrap();
    assert!(
        unit(&live, "mayu-install.service").contains(
            "flatcar-install -d /dev/nvme0n1 -i /opt/mayu/installed.ign -b http://10.77.0.1:4081/assets/flatcar -V 4081.2.0\n"
        ),
        "{body}"
    );
}

#[tokio::test]
async fn worker_boots_live_every_time() {
    let lab = Fixture::new(&[]);
    let s = lab.boot_state();
    let uri = "/ipxe?mac=52:54:00:00:05:02&serial=W1";
    call(&s, "GET", uri).await;
    s.engine.assign("w1", "worker", "t", false).unwrap();
    let m = s.engine.find("w1").unwrap();
    let (_, ign) = call(&s, "GET", &format!("/ignition?id=w1&token={}", m.token)).await;
    assert!(!ign.contains("flatcar-install"), "{ign}");
    assert!(ign.contains("mayu-boot-complete.service"), "{ign}");
    let (st, _) = call(
        &s,
        "POST",
        &format!("/boot-complete?id=w1&token={}", m.token),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    // Running, and still booted over the network into RAM: nothing is on its disk.
    let (_, script) = call(&s, "GET", uri).await;
    assert!(
        script.contains("flatcar_production_pxe.vmlinuz"),
        "{script}"
    );
    assert!(!script.contains("sanboot"), "{script}");
}

#[tokio::test]
async fn installed_machine_is_handed_sanboot_and_each_disk_boot_is_a_step() {
    let lab = Fixture::new(&[]);
    let s = lab.boot_state();
    let mut rx = s.engine.bus().subscribe();
    let uri = "/ipxe?mac=52:54:00:00:05:03&serial=CP2";
    call(&s, "GET", uri).await;
    s.engine.assign("cp2", "control-plane", "t", false).unwrap();
    let token = s.engine.find("cp2").unwrap().token;
    let q = format!("id=cp2&token={token}");

    let (_, script) = call(&s, "GET", uri).await;
    assert!(
        script.contains("flatcar_production_pxe.vmlinuz"),
        "{script}"
    );
    assert_eq!(s.engine.find("cp2").unwrap().state, State::Installing);
    // The installer reboots before it reports: without its word, the machine installs again.
    let (_, script) = call(&s, "GET", uri).await;
    assert!(!script.contains("sanboot"), "{script}");
    let (st, _) = call(&s, "POST", "/installed?id=cp2&token=wrong").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = call(&s, "POST", &format!("/installed?{q}")).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let m = s.engine.find("cp2").unwrap();
    assert!(m.installed);
    assert_eq!(m.state, State::Installing);

    for boot in 1..=2 {
        let (_, script) = call(&s, "GET", uri).await;
        assert!(
            script.contains("sanboot --no-describe --drive 0x80"),
            "boot {boot}: {script}"
        );
        let (st, _) = call(&s, "POST", &format!("/boot-complete?{q}")).await;
        assert_eq!(st, StatusCode::OK);
        let ev = support::wait_for(&mut rx, 10, |e| {
            matches!(
                &e.kind,
                EventKind::BootStep {
                    phase: Phase::DiskBoot,
                    ..
                }
            )
        })
        .await;
        assert_eq!(ev.summary(), "cp2: booted from disk and reported in");
        support::wait_for(&mut rx, 10, |e| {
            matches!(
                &e.kind,
                EventKind::BootStep {
                    phase: Phase::BootComplete,
                    ..
                }
            )
        })
        .await;
        let m = s.engine.find("cp2").unwrap();
        assert_eq!(m.state, State::Running);
        let (disk, done) = (m.phases.disk_boot.unwrap(), m.phases.boot_complete.unwrap());
        assert!(disk <= done);
        assert_eq!(m.phases.current().map(|c| c.0), Some(Phase::BootComplete));
    }

    // An operator marking it booted says nothing about what booted.
    let before = s.engine.find("cp2").unwrap().phases.disk_boot;
    s.engine.boot_complete("cp2", "alice").unwrap();
    let ev = support::wait_for(
        &mut rx,
        10,
        |e| matches!(&e.kind, EventKind::BootStep { phase, .. } if *phase != Phase::Ipxe),
    )
    .await;
    assert!(
        matches!(
            &ev.kind,
            EventKind::BootStep {
                phase: Phase::BootComplete,
                ..
            }
        ),
        "{}",
        ev.summary()
    );
    assert_eq!(s.engine.find("cp2").unwrap().phases.disk_boot, before);

    // A reinstall forgets the disk: the next boot installs again.
    s.engine.request_reinstall("cp2", "t").unwrap();
    assert!(!s.engine.find("cp2").unwrap().installed);
    let (_, script) = call(&s, "GET", uri).await;
    assert!(
        script.contains("flatcar_production_pxe.vmlinuz"),
        "{script}"
    );
}

#[test]
fn install_settings_carry_the_boot_complete_token() {
    // The lab's install profile: the installer and the installed system read this file.
    let lab = Fixture::new(&[(
        "  - name: discovery\n",
        "  - name: install\n    image: installer\n    boot_from_disk: true\n    templates: { ipxe: discovery.ipxe, metadata: install.env }\n  - name: discovery\n",
    )]);
    let config = lab.config();
    let templates = Templates::load(&config).unwrap();
    let p = config.profile("install").unwrap();
    let mut m = mayu::templates::set::fixture(p);
    m.token = "t0k".into();
    let out = templates
        .current()
        .render(
            "install.env",
            Kind::Metadata,
            &mayu::templates::context::build(
                &config,
                "10.77.0.1:4081".parse().unwrap(),
                Some(p),
                &m,
            )
            .unwrap(),
        )
        .unwrap();
    assert!(out.contains("MAYU_INSTALL_DISK=/dev/vda\n"), "{out}");
    assert!(
        out.contains("MAYU_ASSETS=http://10.77.0.1:4081/assets/installer\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "MAYU_BOOT_COMPLETE_URL=http://10.77.0.1:4081/boot-complete?id={}&token=t0k\n",
            m.id
        )),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// A real machine.

const TEST: &str = "qemu_install";
const SERIAL: &str = "MAYU-QI-1";
const MAC: &str = "52:54:00:77:02:01";
const GUEST_MIB: u64 = 256;
const DISK_BYTES: u64 = 64 << 20;
/// Bounds that only stop a hung run: one power-on takes well under a minute on an idle core.
const POWER_ON_TIMEOUT: Duration = Duration::from_secs(420);
/// Console lines of a machine that will not get any further.
const STUCK: [&str; 5] = [
    "No bootable device",
    "failed: Input/output error",
    "MAYU-INSTALLER-FAILED",
    "MAYU-SYSTEM-FAILED",
    "Kernel panic",
];
/// The one machine; each power-on is its own QEMU process, named after it.
const MACHINE: Guest = Guest {
    name: "power-on-1",
    serial: SERIAL,
    mac: MAC,
    tap: "tap0",
};

fn id() -> String {
    MACHINE.id()
}

fn config_text() -> String {
    // No default profile: the machine goes straight to `install` on its first request.
    qemu::config_head()
        + r#"profiles:
  - name: install
    image: installer
    kernel_args: "console=ttyS0 panic=1"
    boot_from_disk: true
    templates: { ipxe: discovery.ipxe, metadata: install.env }
    env: { install_disk: /dev/vda }
"#
}

/// Powers the machine on: network first (the NIC's iPXE ROM), its one disk behind it.
fn power_on(lab: &Lab, g: &Guest) -> Result<(), String> {
    let mut args = g.qemu(lab, &qemu::accel(), GUEST_MIB, "qemu-install", "");
    args.extend([
        "-drive".into(),
        format!(
            "file={},format=raw,if=none,id=d0",
            lab.file("disk.raw").display()
        ),
        // A boot index puts the disk in SeaBIOS's drive table (BIOS drive 0x80), which iPXE's
        // `sanboot` needs; the network still comes first.
        "-device".into(),
        "virtio-blk-pci,drive=d0,bootindex=2".into(),
    ]);
    args.extend(g.seabios(lab)?);
    // No -no-reboot: the installer reboots, and the firmware network-boots again.
    g.start(lab, &args)
}

fn changed(change: &'static str) -> Step {
    step(format!("machine_changed: {change}"), move |e| {
        str_of(e, "type") == "machine_changed" && str_of(e, "change").contains(change)
    })
}

/// Power-on 1: the installer's network boot, the disk written, the reboot, `sanboot`, the
/// installed system's report.
fn install_journey() -> Vec<Step> {
    vec![
        step("machine_added in install", |e| {
            str_of(e, "type") == "machine_added"
                && e.pointer("/machine/profile").and_then(Value::as_str) == Some("install")
        }),
        boot_step("ipxe", "profile install script served"),
        boot_step("kernel", "installer/vmlinuz"),
        boot_step("initrd", "installer/initrd.img"),
        boot_step("config", "metadata served"),
        // The installer copies the system from mayu's image folder to the disk.
        boot_step("kernel", "installer/vmlinuz"),
        boot_step("initrd", "installer/system-initrd.img"),
        changed("installed to disk"),
        boot_step("ipxe", "local disk"),
        changed("boot complete"),
        boot_step("disk_boot", "reported in"),
        boot_step("boot_complete", "reported"),
    ]
}

/// Power-on 2: network first, `sanboot`, the disk's report.
fn disk_journey() -> Vec<Step> {
    vec![
        boot_step("ipxe", "local disk"),
        boot_step("disk_boot", "reported in"),
        boot_step("boot_complete", "reported"),
    ]
}

/// Powers the machine on as `name` and waits until the events after `after` follow `steps` and
/// the machine has powered itself off. Returns those events.
async fn power_cycle(
    lab: &Lab,
    api: &Api,
    name: &'static str,
    after: u64,
    steps: &[Step],
) -> Vec<Value> {
    let g = Guest { name, ..MACHINE };
    power_on(lab, &g).unwrap_or_else(|e| panic!("power on: {e}"));
    let until_off = Journey {
        after,
        until_off: true,
        stuck: &STUCK,
        timeout: POWER_ON_TIMEOUT,
    };
    qemu::journey(lab, api, &g, steps, &until_off).await
}

async fn scenario(lab: &Lab, mayu: &Path) {
    let disk = fs::File::create(lab.file("disk.raw")).expect("create the disk");
    disk.set_len(DISK_BYTES).expect("size the blank disk");
    drop(disk);
    fs::create_dir_all(lab.file("tftproot")).expect("tftproot");
    let api = qemu::start_mayu(lab, mayu, &config_text()).await;
    let id = id();

    // Power-on 1: install, reboot, boot the disk.
    let first = power_cycle(lab, &api, "power-on-1", 0, &install_journey()).await;
    // In this order on the console: the installer, iPXE booting the disk, the disk's system.
    let serial = fs::read_to_string(lab.file("power-on-1.serial.log")).unwrap_or_default();
    let mut rest = serial.as_str();
    for marker in [
        "MAYU-INSTALLER-DONE disk=/dev/vda",
        "Booting from SAN device 0x80",
        "mayu-system: installed system boot 1",
        &format!("MAYU-SYSTEM-BOOT-COMPLETE boot=1 host={id}"),
    ] {
        let at = rest.find(marker).unwrap_or_else(|| {
            panic!(
                "no `{marker}` (in order) on the serial console:\n{}",
                tail(&lab.file("power-on-1.serial.log"), 60)
            )
        });
        rest = &rest[at..];
    }
    // The system booted from disk was written by the installer in this power-on: the
    // installer's report comes before the disk is handed out.
    let seq_of = |events: &[Value], what: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .filter(|e| MACHINE.about(e))
            .find(|e| what(e))
            .and_then(|e| e["seq"].as_u64())
    };
    let installed_at = seq_of(&first, &|e| str_of(e, "change") == "installed to disk");
    let sanboot_at = seq_of(&first, &|e| str_of(e, "detail") == "local disk");
    assert!(installed_at < sanboot_at, "{}", MACHINE.summaries(&first));
    let m = api.must_get(&format!("/api/v1/machines/{id}")).await;
    assert_eq!(str_of(&m, "state"), "running", "{m:#}");
    assert_eq!(m["installed"], Value::Bool(true), "{m:#}");
    assert_eq!(str_of(&m, "profile"), "install", "{m:#}");
    let last = first.last().and_then(|e| e["seq"].as_u64()).unwrap_or(0);

    // Power-on 2: network first; mayu hands the running machine its disk.
    let second = power_cycle(lab, &api, "power-on-2", last, &disk_journey()).await;
    let serial = fs::read_to_string(lab.file("power-on-2.serial.log")).unwrap_or_default();
    let sanboot = serial.find("Booting from SAN device 0x80");
    let report = serial.find(&format!("MAYU-SYSTEM-BOOT-COMPLETE boot=2 host={id}"));
    assert!(
        sanboot.is_some() && sanboot < report,
        "the disk's second boot did not report:\n{}",
        tail(&lab.file("power-on-2.serial.log"), 60)
    );
    assert!(
        !serial.contains("mayu-installer"),
        "the installer ran again:\n{}",
        tail(&lab.file("power-on-2.serial.log"), 60)
    );
    // Nothing but the disk booted: no kernel, initrd or config was served this time.
    let served: Vec<&Value> = second
        .iter()
        .filter(|e| MACHINE.about(e) && str_of(e, "type") == "boot_step")
        .filter(|e| ["kernel", "initrd", "config"].contains(&str_of(e, "phase")))
        .collect();
    assert!(served.is_empty(), "{}", MACHINE.summaries(&second));

    // The script iPXE was handed, as iPXE asks for it.
    let script = api
        .http
        .get(format!(
            "http://{ADDR}:{BOOT_PORT}/ipxe?mac={MAC}&serial={SERIAL}&arch=x86_64"
        ))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("GET /ipxe")
        .text()
        .await
        .expect("script body");
    assert!(
        script.contains("sanboot --no-describe --drive 0x80"),
        "{script}"
    );

    // The machine's timeline and audit trail.
    let m = api.must_get(&format!("/api/v1/machines/{id}")).await;
    assert!(
        m.pointer("/phases/disk_boot").is_some_and(Value::is_string),
        "{m:#}"
    );
    let log = qemu::git_log(lab, &id, &["--reverse", "--format=%an %s"]);
    let mut rest = log.as_str();
    for want in [
        "registered",
        "installing",
        "installed to disk",
        "boot complete",
    ] {
        let at = rest
            .find(want)
            .unwrap_or_else(|| panic!("git log lacks `{want}` in order:\n{log}"));
        rest = &rest[at..];
    }
    assert!(
        log.lines().all(|l| l.starts_with(&format!("{id} "))),
        "every commit is the machine's own:\n{log}"
    );
}

#[test]
fn install_to_disk_then_boot_from_disk() {
    let needs = Needs {
        test: TEST,
        tools: &[("cpio", "cpio"), ("extlinux", "extlinux")],
        files: &[
            ("/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu"),
            ("/usr/lib/syslinux/mbr/mbr.bin", "syslinux-common"),
        ],
        images: &["build-install-image.sh"],
    };
    let started = Instant::now();
    qemu::in_lab(
        &needs,
        || Lab::create(TEST, format!("mayu-qi-{}", std::process::id()), &["tap0"]),
        |lab, mayu| Box::pin(scenario(lab, mayu)),
    );
    eprintln!("{TEST}: two power-ons in {:.0?}", started.elapsed());
}
