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
//! The QEMU test needs root, QEMU and the Debian packages `scripts/install-deps.sh` installs;
//! without them it returns early with the reason, except under `CI=true`, where it fails.
//! `MAYU_BIN` names the mayu binary (else it is built); `MAYU_QEMU_ACCEL` = `kvm` | `tcg`;
//! `MAYU_TEST_KEEP=1` keeps the temp folder with logs, disk and inventory.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use mayu::boot::{router, BootState};
use mayu::events::EventKind;
use mayu::machine::{Phase, State};
use mayu::templates::{set::finish, Kind, Templates};
use serde_json::Value;
use support::Lab as Fixture;
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------
// Through the router.

fn state(lab: &Fixture) -> BootState {
    let engine = lab.engine();
    let templates = Arc::new(Templates::load(engine.config()).unwrap());
    BootState {
        engine,
        templates,
        boot_addr: "127.0.0.1:4081".parse().unwrap(),
    }
}

async fn call(s: &BootState, method: &str, uri: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let resp = router(s.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
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
    let s = state(&lab);
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
    let s = state(&lab);
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
    let s = state(&lab);
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

const ADDR: &str = "10.77.0.1";
const BOOT_PORT: u16 = 4081;
const API: &str = "http://127.0.0.1:4080";
const SERIAL: &str = "MAYU-QI-1";
const MAC: &str = "52:54:00:77:02:01";
const GUEST_MIB: u64 = 256;
const DISK_BYTES: u64 = 64 << 20;
/// Bounds that only stop a hung run: one power-on takes well under a minute on an idle core.
const POWER_ON_TIMEOUT: Duration = Duration::from_secs(420);
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Console lines of a machine that will not get any further.
const STUCK: [&str; 5] = [
    "No bootable device",
    "failed: Input/output error",
    "MAYU-INSTALLER-FAILED",
    "MAYU-SYSTEM-FAILED",
    "Kernel panic",
];
/// How long events may trail a machine that has powered off.
const EVENT_GRACE: Duration = Duration::from_secs(10);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn id() -> String {
    SERIAL.to_lowercase()
}

/// Why this machine cannot run the test, if it cannot.
fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, taps)".into());
    }
    let tools = [
        ("ip", "iproute2"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("dnsmasq", "dnsmasq-base"),
        ("busybox", "busybox-static"),
        ("cpio", "cpio"),
        ("extlinux", "extlinux"),
        ("git", "git"),
    ];
    for (tool, package) in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "`{tool}` not found (Debian package {package}; scripts/install-deps.sh installs all)"
            ));
        }
    }
    for (file, package) in [
        ("/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu"),
        ("/usr/lib/syslinux/mbr/mbr.bin", "syslinux-common"),
    ] {
        if !Path::new(file).is_file() {
            return Some(format!("{file} missing (Debian package {package})"));
        }
    }
    None
}

fn not_runnable(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the QEMU install test cannot run in CI: {reason}");
    }
    eprintln!("qemu_install: not run: {reason}");
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, String> {
    run(Command::new("ip").args(args))
}

fn mayu_binary() -> Result<PathBuf, String> {
    if let Ok(bin) = std::env::var("MAYU_BIN") {
        return Ok(PathBuf::from(bin));
    }
    run(Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "mayu-console", "--bin", "mayu"])
        .current_dir(repo()))?;
    // <target>/debug/deps/qemu_install-HASH → <target>/debug/mayu
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("mayu"))
        .ok_or("cannot place the target folder")?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} not found after cargo build", bin.display()))
    }
}

fn accel() -> Vec<&'static str> {
    let kvm_works = || {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
            && fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
                c.split_whitespace()
                    .any(|flag| flag == "vmx" || flag == "svm")
            })
    };
    match std::env::var("MAYU_QEMU_ACCEL").as_deref() {
        Ok("kvm") => vec!["-accel", "kvm", "-cpu", "host"],
        Ok("tcg") => vec!["-accel", "tcg", "-cpu", "max"],
        _ if kvm_works() => vec!["-accel", "kvm", "-cpu", "host"],
        _ => vec!["-accel", "tcg", "-cpu", "max"],
    }
}

/// Everything the test made. Dropping it stops the processes it started (by pid: TERM, then
/// KILL), any process still inside its namespace, and removes the namespace and temp folder.
struct Lab {
    ns: String,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    children: Mutex<Vec<(String, Child)>>,
}

impl Lab {
    fn create() -> Result<Lab, String> {
        let ns = format!("mayu-qi-{}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("mayu-qemu-install-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let path = dir.path().to_path_buf();
        // dnsmasq drops to `nobody`: the TFTP root and the folders above it must be traversable.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        let lab = Lab {
            ns,
            dir: Some(dir),
            path,
            children: Mutex::new(Vec::new()),
        };
        ip(&["netns", "add", &lab.ns])?;
        let ns = lab.ns.as_str();
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", ns, "addr", "add", &format!("{ADDR}/24"), "dev", "br0"])?;
        // A ULA for dnsmasq's router advertisements: iPXE otherwise waits ~13 s for IPv6.
        ip(&["-n", ns, "addr", "add", "fd77:77::1/64", "dev", "br0"])?;
        ip(&["-n", ns, "link", "set", "br0", "up"])?;
        ip(&["-n", ns, "tuntap", "add", "dev", "tap0", "mode", "tap"])?;
        ip(&["-n", ns, "link", "set", "tap0", "master", "br0"])?;
        ip(&["-n", ns, "link", "set", "tap0", "up"])?;
        Ok(lab)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Starts `cmd` inside the namespace; `ip netns exec` execs it, so the pid is its own.
    fn spawn(&self, name: &str, cmd: &[&str], log: &Path) -> Result<(), String> {
        let out = fs::File::create(log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_string(), child));
        Ok(())
    }

    /// `Some(status)` once the named process has exited.
    fn exited(&self, name: &str) -> Option<String> {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let (_, child) = children.iter_mut().find(|(n, _)| n == name)?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    fn stop_all(&self) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        // Machines first, mayu last: it stops its dnsmasq child on TERM.
        for (_, child) in children.iter_mut().rev() {
            stop(child);
        }
        children.clear();
    }
}

fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_all();
        // Anything still in our namespace was started by us (mayu's dnsmasq, if orphaned).
        if let Ok(pids) = ip(&["netns", "pids", &self.ns]) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill(2) on a process inside the namespace this test created.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Err(e) = ip(&["netns", "del", &self.ns]) {
            eprintln!("qemu_install: cleanup: {e}");
        }
        if std::env::var("MAYU_TEST_KEEP").is_ok_and(|v| v == "1") {
            if let Some(dir) = self.dir.take() {
                eprintln!("qemu_install: kept {}", dir.keep().display());
            }
        }
    }
}

/// Moves the calling thread into the namespace, so its sockets (and those of a current-thread
/// runtime driven by it) live there.
fn enter_namespace(ns: &str) -> Result<(), String> {
    let f = fs::File::open(format!("/run/netns/{ns}")).map_err(|e| format!("open netns: {e}"))?;
    // SAFETY: setns(2) with a valid namespace fd; it affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!("setns: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn config_text() -> String {
    let repo = repo();
    // No default profile: the machine goes straight to `install` on its first request.
    format!(
        r#"network:
  interface: br0
  ipv6_ra: true
  address: {ADDR}
  prefix: 24
  dhcp:
    mode: full
    range: [10.77.0.100, 10.77.0.200]
    lease_time: 1h
http:
  boot: 0.0.0.0:{BOOT_PORT}
  api: 127.0.0.1:4080
inventory: inventory
logs: logs
runtime: run
tftproot: tftproot
templates: {templates}
images: {images}
audit: {{ git: true }}
assignment: auto
profiles:
  - name: install
    image: installer
    kernel_args: "console=ttyS0 panic=1"
    boot_from_disk: true
    templates: {{ ipxe: discovery.ipxe, metadata: install.env }}
    env: {{ install_disk: /dev/vda }}
"#,
        templates = repo.join("templates").display(),
        images = repo.join("images").display(),
    )
}

/// Powers the machine on: network first (the NIC's iPXE ROM), its one disk behind it.
fn power_on(lab: &Lab, name: &str) -> Result<(), String> {
    let serial_log = lab.file(&format!("{name}.serial.log"));
    let sercon = lab.file("sercon");
    // SeaBIOS prints to the serial port only when told where it is (0x3f8, little-endian).
    fs::write(&sercon, [0xf8u8, 0x03]).map_err(|e| e.to_string())?;
    let mut args: Vec<String> = vec!["qemu-system-x86_64".into()];
    args.extend(accel().into_iter().map(String::from));
    args.extend(
        [
            "-name",
            name,
            "-m",
            &GUEST_MIB.to_string(),
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-vga",
            "none",
            "-monitor",
            "none",
            "-serial",
            &format!("file:{}", serial_log.display()),
            "-smbios",
            &format!("type=1,manufacturer=mayu-test,product=qemu-install,serial={SERIAL}"),
            "-netdev",
            "tap,id=n0,ifname=tap0,script=no,downscript=no",
            "-device",
            &format!("virtio-net-pci,netdev=n0,mac={MAC},bootindex=1"),
            "-drive",
            &format!(
                "file={},format=raw,if=none,id=d0",
                lab.file("disk.raw").display()
            ),
            // A boot index puts the disk in SeaBIOS's drive table (BIOS drive 0x80), which iPXE's
            // `sanboot` needs; the network still comes first.
            "-device",
            "virtio-blk-pci,drive=d0,bootindex=2",
            "-boot",
            "order=n,strict=on",
            "-fw_cfg",
            &format!("name=etc/sercon-port,file={}", sercon.display()),
        ]
        .map(String::from),
    );
    // No -no-reboot: the installer reboots, and the firmware network-boots again.
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.spawn(name, &refs, &lab.file(&format!("{name}.qemu.log")))
}

fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn diagnostics(lab: &Lab) -> String {
    let mut s = String::new();
    for name in [
        "mayu.log",
        "power-on-1.serial.log",
        "power-on-2.serial.log",
        "power-on-1.qemu.log",
        "power-on-2.qemu.log",
    ] {
        let _ = writeln!(s, "--- {name} (tail) ---\n{}", tail(&lab.file(name), 40));
    }
    s
}

/// The API as seen from inside the namespace, plus the events collected from its stream.
struct Api {
    http: reqwest::Client,
    token: String,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Api {
    async fn get(&self, path: &str) -> Result<Value, String> {
        let resp = self
            .http
            .get(format!("{API}{path}"))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| format!("GET {path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("GET {path}: {status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}: {body}"))
    }

    fn events(&self) -> Vec<Value> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Follows `/api/v1/events` from the first kept event, reconnecting after the last seen.
    fn follow_events(&self) {
        let http = self.http.clone();
        let token = self.token.clone();
        let events = self.events.clone();
        tokio::task::spawn_local(async move {
            let mut after = 0u64;
            loop {
                let resp = http
                    .get(format!("{API}/api/v1/events?after={after}"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                if let Ok(resp) = resp.and_then(|r| r.error_for_status()) {
                    let mut stream = resp.bytes_stream();
                    let mut buf = String::new();
                    while let Some(Ok(chunk)) = stream.next().await {
                        buf.push_str(&String::from_utf8_lossy(&chunk));
                        while let Some(end) = buf.find("\n\n") {
                            let frame: String = buf.drain(..end + 2).collect();
                            let data: String = frame
                                .lines()
                                .filter_map(|l| l.strip_prefix("data:"))
                                .map(str::trim_start)
                                .collect();
                            if let Ok(v) = serde_json::from_str::<Value>(&data) {
                                if let Some(seq) = v.get("seq").and_then(Value::as_u64) {
                                    after = after.max(seq);
                                }
                                events.lock().unwrap_or_else(|p| p.into_inner()).push(v);
                            }
                        }
                    }
                }
                // Reconnect pacing only; what the test waits for is matched on events.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
}

/// Polls `check` until it yields a value; on timeout fails with `what` and the diagnostics.
async fn wait_for<T>(
    lab: &Lab,
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if let Some(status) = lab.exited("mayu") {
            panic!(
                "mayu exited ({status}) while waiting for {what}\n{}",
                diagnostics(lab)
            );
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}\n{}", diagnostics(lab));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The event is about our machine (by id, or by MAC for DHCP).
fn about(ev: &Value) -> bool {
    let id = id();
    str_of(ev, "id") == id
        || ev.pointer("/machine/id").and_then(Value::as_str) == Some(id.as_str())
        || (str_of(ev, "type") == "dhcp" && str_of(ev, "mac").eq_ignore_ascii_case(MAC))
}

/// One step of the machine's expected journey, matched against events in order.
struct Step {
    what: String,
    matches: Box<dyn Fn(&Value) -> bool>,
}

fn step(what: impl Into<String>, matches: impl Fn(&Value) -> bool + 'static) -> Step {
    Step {
        what: what.into(),
        matches: Box::new(matches),
    }
}

/// A boot step event of `phase` whose detail mentions `about`.
fn boot_step(phase: &'static str, about: &'static str) -> Step {
    step(format!("boot_step {phase} ({about})"), move |e| {
        str_of(e, "type") == "boot_step"
            && str_of(e, "phase") == phase
            && str_of(e, "detail").contains(about)
    })
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

/// `Err` names the first step the events (in order) have not reached.
fn follow(events: &[Value], steps: &[Step]) -> Result<(), String> {
    let mut it = events.iter().filter(|e| about(e));
    for s in steps {
        if !it.any(|e| (s.matches)(e)) {
            return Err(s.what.clone());
        }
    }
    Ok(())
}

fn summaries(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| about(e))
        .map(|e| format!("  {} {}", e["seq"], str_of(e, "summary")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Powers the machine on and waits until the events after `after` follow `steps` and the
/// machine has powered itself off. Returns those events.
async fn power_cycle(lab: &Lab, api: &Api, name: &str, after: u64, steps: &[Step]) -> Vec<Value> {
    power_on(lab, name).unwrap_or_else(|e| panic!("power on: {e}"));
    let since = |events: Vec<Value>| -> Vec<Value> {
        events
            .into_iter()
            .filter(|e| e["seq"].as_u64().is_some_and(|s| s > after))
            .collect()
    };
    // Once the machine has powered off (or died), its events are all in or never will be; the
    // stream gets a short grace period to deliver the last ones.
    let mut gone: Option<(Instant, String)> = None;
    let serial_log = lab.file(&format!("{name}.serial.log"));
    let outcome = wait_for(
        lab,
        &format!("{name} to finish"),
        POWER_ON_TIMEOUT,
        async || {
            // A machine that is stuck says so on its console; no need to wait for the timeout.
            let console = fs::read_to_string(&serial_log).unwrap_or_default();
            if let Some(stuck) = STUCK.iter().find(|s| console.contains(**s)) {
                return Some(Err(format!("{name}: `{stuck}` on the serial console")));
            }
            let reached = follow(&since(api.events()), steps);
            if gone.is_none() {
                gone = lab.exited(name).map(|status| (Instant::now(), status));
            }
            match (reached, &gone) {
                (Ok(()), Some(_)) => Some(Ok(())),
                (Err(missing), Some((at, status))) if at.elapsed() > EVENT_GRACE => Some(Err(
                    format!("qemu {name} exited ({status}) before `{missing}`"),
                )),
                _ => None,
            }
        },
    )
    .await;
    if let Err(e) = outcome {
        panic!(
            "{e}\nevents for {}:\n{}\n{}",
            id(),
            summaries(&api.events()),
            diagnostics(lab)
        );
    }
    since(api.events())
}

async fn scenario(lab: &Lab, mayu: &Path) {
    let config = lab.file("config.yaml");
    fs::write(&config, config_text()).expect("write config");
    let disk = fs::File::create(lab.file("disk.raw")).expect("create the disk");
    disk.set_len(DISK_BYTES).expect("size the blank disk");
    drop(disk);
    let tftp = lab.file("tftproot");
    fs::create_dir_all(&tftp).expect("tftproot");
    let cfg = config.to_string_lossy().into_owned();
    let bin = mayu.to_string_lossy().into_owned();
    lab.spawn(
        "mayu",
        &[&bin, "--headless", "--config", &cfg],
        &lab.file("mayu.log"),
    )
    .expect("start mayu");

    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let token_file = lab.file("tokens.json.admin");
    let token = wait_for(
        lab,
        "mayu's boot port and admin token",
        START_TIMEOUT,
        async || {
            let boot = http
                .get(format!("http://{ADDR}:{BOOT_PORT}/boot.ipxe"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let token = fs::read_to_string(&token_file).ok()?;
            boot.then(|| token.trim().to_string())
        },
    )
    .await;
    let streaming = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client");
    let api = Api {
        http: streaming,
        token,
        events: Arc::new(Mutex::new(Vec::new())),
    };
    api.follow_events();
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
            .filter(|e| about(e))
            .find(|e| what(e))
            .and_then(|e| e["seq"].as_u64())
    };
    let installed_at = seq_of(&first, &|e| str_of(e, "change") == "installed to disk");
    let sanboot_at = seq_of(&first, &|e| str_of(e, "detail") == "local disk");
    assert!(installed_at < sanboot_at, "{}", summaries(&first));
    let m = api
        .get(&format!("/api/v1/machines/{id}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
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
        .filter(|e| about(e) && str_of(e, "type") == "boot_step")
        .filter(|e| ["kernel", "initrd", "config"].contains(&str_of(e, "phase")))
        .collect();
    assert!(served.is_empty(), "{}", summaries(&second));

    // The script iPXE was handed, as iPXE asks for it.
    let script = http
        .get(format!(
            "http://{ADDR}:{BOOT_PORT}/ipxe?mac={MAC}&serial={SERIAL}&arch=x86_64"
        ))
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
    let m = api
        .get(&format!("/api/v1/machines/{id}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        m.pointer("/phases/disk_boot").is_some_and(Value::is_string),
        "{m:#}"
    );
    let log = run(Command::new("git")
        .args(["-C"])
        .arg(lab.file("inventory"))
        .args([
            "log",
            "--reverse",
            "--format=%an %s",
            "--",
            &format!("{id}.json"),
        ]))
    .unwrap_or_else(|e| panic!("{e}"));
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
    if let Some(reason) = missing_prerequisite() {
        return not_runnable(&reason);
    }
    if let Err(e) = run(&mut Command::new(
        repo().join("scripts").join("build-install-image.sh"),
    )) {
        return not_runnable(&format!("cannot build the install image: {e}"));
    }
    let mayu = match mayu_binary() {
        Ok(m) => m,
        Err(e) => panic!("cannot build mayu: {e}"),
    };
    let lab = match Lab::create() {
        Ok(lab) => lab,
        Err(e) => return not_runnable(&format!("cannot create the lab network: {e}")),
    };
    let started = Instant::now();
    let outcome = std::thread::scope(|s| {
        s.spawn(|| {
            enter_namespace(&lab.ns).expect("enter the namespace");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, scenario(&lab, &mayu));
        })
        .join()
    });
    eprintln!("qemu_install: two power-ons in {:.0?}", started.elapsed());
    drop(lab);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
