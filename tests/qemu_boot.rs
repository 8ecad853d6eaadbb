//! Real network boots: a BIOS (SeaBIOS) and a UEFI (OVMF) QEMU machine PXE-boot through mayu's
//! supervised dnsmasq child and boot HTTP, run the discovery image, register with facts, are
//! assigned by quota (`first` holds one, so the second machine lands in `second`), boot their
//! profile's test image and report boot-complete.
//!
//! Everything runs in a network namespace this test creates (a bridge with no uplink, one tap
//! per machine); mayu itself runs inside it (`ip netns exec`), and so does the thread that talks
//! to mayu's API, which listens on the namespace's loopback.
//!
//! Needs root, QEMU and the Debian packages `scripts/lab.sh deps` installs. Without them it
//! returns early with the reason, except under `CI=true`, where it fails. The images are built
//! by `scripts/build-discovery.sh` and `scripts/build-test-image.sh` (fast when up to date).
//!
//! The `mayu` binary lives in the `ui` crate, so `CARGO_BIN_EXE_mayu` is not available here: the
//! test takes `MAYU_BIN` when set, otherwise runs `cargo build -p mayu-console --bin mayu` and
//! uses `<target>/debug/mayu` next to this test's own executable.
//!
//! Environment: `MAYU_QEMU_ACCEL` = `kvm` | `tcg` (default: KVM only where the CPU has real
//! hardware virtualisation), `MAYU_TEST_KEEP=1` keeps the temp folder with logs and inventory.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

const ADDR: &str = "10.77.0.1";
const BOOT_PORT: u16 = 4081;
const API: &str = "http://127.0.0.1:4080";
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// Guest RAM in MiB; discovery must report exactly this.
const GUEST_MIB: u64 = 256;
/// One machine's whole journey (two network boots) under software emulation takes ~30–60 s
/// on an idle core; this bound only stops a hung run.
const MACHINE_TIMEOUT: Duration = Duration::from_secs(420);
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long events may trail a machine that has powered off.
const EVENT_GRACE: Duration = Duration::from_secs(10);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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
                "`{tool}` not found (Debian package {package}; `scripts/lab.sh deps` installs all)"
            ));
        }
    }
    for (file, package) in [
        (OVMF_CODE, "ovmf"),
        ("/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu"),
        ("/usr/lib/ipxe/ipxe.efi", "ipxe"),
    ] {
        if !Path::new(file).is_file() {
            return Some(format!("{file} missing (Debian package {package})"));
        }
    }
    None
}

fn not_runnable(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the QEMU boot test cannot run in CI: {reason}");
    }
    eprintln!("qemu_boot: not run: {reason}");
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
    // <target>/debug/deps/qemu_boot-HASH → <target>/debug/mayu
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
        let ns = format!("mayu-qt-{}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("mayu-qemu-")
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
        for tap in ["tap0", "tap1"] {
            ip(&["-n", ns, "tuntap", "add", "dev", tap, "mode", "tap"])?;
            ip(&["-n", ns, "link", "set", tap, "master", "br0"])?;
            ip(&["-n", ns, "link", "set", tap, "up"])?;
        }
        Ok(lab)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Starts `cmd` inside the namespace; `ip netns exec` execs it, so the pid is its own.
    fn spawn(&self, name: &str, cmd: &[&str], log: &Path) -> Result<u32, String> {
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
        let pid = child.id();
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_string(), child));
        Ok(pid)
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
            eprintln!("qemu_boot: cleanup: {e}");
        }
        if std::env::var("MAYU_TEST_KEEP").is_ok_and(|v| v == "1") {
            if let Some(dir) = self.dir.take() {
                eprintln!("qemu_boot: kept {}", dir.keep().display());
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

fn config_text(lab: &Lab) -> String {
    let repo = repo();
    // The test image is booted by the same generic kernel+initrd template as discovery: both
    // read mayu.url, mayu.id and mayu.token from the kernel command line.
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
default_profile: discovery
profiles:
  - name: first
    quantity: 1
    selector: {{ memory_gib: ">=0.1" }}
    image: test
    kernel_args: "console=ttyS0 panic=1"
    templates: {{ ipxe: discovery.ipxe }}
  - name: second
    quantity: 1
    selector: {{ memory_gib: ">=0.1" }}
    image: test
    kernel_args: "console=ttyS0 panic=1"
    templates: {{ ipxe: discovery.ipxe }}
  - name: discovery
    image: discovery
    kernel_args: "console=ttyS0 panic=1"
    templates: {{ ipxe: discovery.ipxe }}
"#,
        templates = repo.join("templates").display(),
        images = repo.join("images").display(),
    ) + &format!("# lab {}\n", lab.ns)
}

struct Vm {
    name: &'static str,
    uefi: bool,
    serial: &'static str,
    mac: &'static str,
    tap: &'static str,
    disks: usize,
}

impl Vm {
    fn id(&self) -> String {
        self.serial.to_lowercase()
    }
}

const BIOS: Vm = Vm {
    name: "bios",
    uefi: false,
    serial: "MAYU-QT-BIOS",
    mac: "52:54:00:77:01:01",
    tap: "tap0",
    disks: 2,
};
const UEFI: Vm = Vm {
    name: "uefi",
    uefi: true,
    serial: "MAYU-QT-UEFI",
    mac: "52:54:00:77:01:02",
    tap: "tap1",
    disks: 1,
};

fn start_vm(lab: &Lab, vm: &Vm) -> Result<(), String> {
    let serial_log = lab.file(&format!("{}.serial.log", vm.name));
    let mut args: Vec<String> = vec!["qemu-system-x86_64".into()];
    args.extend(accel().into_iter().map(String::from));
    args.extend(
        [
            "-name",
            vm.name,
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
            &format!(
                "type=1,manufacturer=mayu-test,product=qemu-boot,serial={}",
                vm.serial
            ),
            "-netdev",
            &format!("tap,id=n0,ifname={},script=no,downscript=no", vm.tap),
            "-device",
            &format!("virtio-net-pci,netdev=n0,mac={},bootindex=1", vm.mac),
        ]
        .map(String::from),
    );
    for d in 0..vm.disks {
        args.push("-blockdev".into());
        args.push(format!(
            "driver=null-co,node-name=d{d},size={},read-zeroes=on",
            (d as u64 + 1) << 30
        ));
        args.push("-device".into());
        args.push(format!("virtio-blk-pci,drive=d{d}"));
    }
    if vm.uefi {
        let vars = lab.file(&format!("{}.vars.fd", vm.name));
        fs::copy(OVMF_VARS, &vars).map_err(|e| format!("copy {OVMF_VARS}: {e}"))?;
        args.extend([
            "-drive".into(),
            format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        ]);
    } else {
        // SeaBIOS prints to the serial port only when told where it is (0x3f8, little-endian).
        let sercon = lab.file("sercon");
        fs::write(&sercon, [0xf8u8, 0x03]).map_err(|e| e.to_string())?;
        args.extend([
            "-boot".into(),
            "order=n,strict=on".into(),
            "-fw_cfg".into(),
            format!("name=etc/sercon-port,file={}", sercon.display()),
        ]);
    }
    // No -no-reboot: discovery reboots, and the firmware PXE-boots the assigned profile.
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.spawn(vm.name, &refs, &lab.file(&format!("{}.qemu.log", vm.name)))?;
    Ok(())
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

fn diagnostics(lab: &Lab) -> String {
    let mut s = String::new();
    for name in [
        "mayu.log",
        "bios.serial.log",
        "uefi.serial.log",
        "bios.qemu.log",
        "uefi.qemu.log",
    ] {
        let _ = writeln!(s, "--- {name} (tail) ---\n{}", tail(&lab.file(name), 40));
    }
    s
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The event is about this machine (by id, or by MAC for DHCP).
fn about(ev: &Value, vm: &Vm) -> bool {
    let id = vm.id();
    str_of(ev, "id") == id
        || ev.pointer("/machine/id").and_then(Value::as_str) == Some(id.as_str())
        || (str_of(ev, "type") == "dhcp" && str_of(ev, "mac").eq_ignore_ascii_case(vm.mac))
}

/// One step of a machine's expected journey, matched against events in order.
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

/// A boot step event of `phase` whose detail mentions `about` (a profile or an image file).
fn boot_step(phase: &'static str, about: String) -> Step {
    step(format!("boot_step {phase} ({about})"), move |e| {
        str_of(e, "type") == "boot_step"
            && str_of(e, "phase") == phase
            && str_of(e, "detail").contains(about.as_str())
    })
}

fn journey(profile: &'static str) -> Vec<Step> {
    let assigned = format!("assigned to {profile}");
    vec![
        step("dhcp", |e| str_of(e, "type") == "dhcp"),
        step("machine_added", |e| str_of(e, "type") == "machine_added"),
        // The discovery boot ...
        boot_step("ipxe", "discovery".into()),
        boot_step("kernel", "discovery/vmlinuz".into()),
        boot_step("initrd", "discovery/initrd.img".into()),
        step(
            format!("machine_changed: facts reported, {assigned}"),
            move |e| {
                let change = str_of(e, "change");
                str_of(e, "type") == "machine_changed"
                    && change.contains("facts reported")
                    && change.contains(assigned.as_str())
            },
        ),
        // ... then the profile's.
        boot_step("ipxe", profile.into()),
        boot_step("kernel", "test/vmlinuz".into()),
        boot_step("initrd", "test/initrd.img".into()),
        step("machine_changed: boot complete", |e| {
            str_of(e, "type") == "machine_changed" && str_of(e, "change") == "boot complete"
        }),
        boot_step("boot_complete", String::new()),
    ]
}

/// Which steps of `steps` the events (in order) have reached; `Err` names the first missing one.
fn follow(events: &[Value], vm: &Vm, steps: &[Step]) -> Result<(), String> {
    let mut it = events.iter().filter(|e| about(e, vm));
    for s in steps {
        if !it.any(|e| (s.matches)(e)) {
            return Err(s.what.clone());
        }
    }
    Ok(())
}

fn summaries(events: &[Value], vm: &Vm) -> String {
    events
        .iter()
        .filter(|e| about(e, vm))
        .map(|e| format!("  {} {}", e["seq"], str_of(e, "summary")))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn boot_and_check(lab: &Lab, api: &Api, vm: &Vm, profile: &'static str) {
    let id = vm.id();
    let steps = journey(profile);
    // Once the machine has powered off (or died), its events are all in or never will be; the
    // stream gets a short grace period to deliver the last ones.
    let mut gone: Option<(Instant, String)> = None;
    let last = wait_for(
        lab,
        &format!("{} ({id}) to boot {profile}", vm.name),
        MACHINE_TIMEOUT,
        async || match follow(&api.events(), vm, &steps) {
            Ok(()) => Some(Ok(())),
            Err(missing) => {
                if gone.is_none() {
                    gone = lab.exited(vm.name).map(|status| (Instant::now(), status));
                }
                match &gone {
                    Some((at, status)) if at.elapsed() > EVENT_GRACE => Some(Err(format!(
                        "qemu {} exited ({status}) before `{missing}`",
                        vm.name
                    ))),
                    _ => None,
                }
            }
        },
    )
    .await;
    if let Err(e) = last {
        panic!(
            "{e}\nevents for {id}:\n{}\n{}",
            summaries(&api.events(), vm),
            diagnostics(lab)
        );
    }

    // The machine powers off after reporting boot-complete.
    wait_for(
        lab,
        &format!("qemu {} to power off", vm.name),
        START_TIMEOUT,
        async || lab.exited(vm.name),
    )
    .await;
    let serial =
        fs::read_to_string(lab.file(&format!("{}.serial.log", vm.name))).unwrap_or_default();
    assert!(
        serial.contains(&format!("MAYU-TEST-BOOT-COMPLETE id={id}")),
        "no boot-complete marker on {}'s serial console:\n{}",
        vm.name,
        tail(&lab.file(&format!("{}.serial.log", vm.name)), 40)
    );
    assert!(
        serial.contains("MAYU-DISCOVERY-REBOOT"),
        "{} never ran discovery:\n{}",
        vm.name,
        tail(&lab.file(&format!("{}.serial.log", vm.name)), 40)
    );

    // Final state, profile and facts through the API.
    let m = api
        .get(&format!("/api/v1/machines/{id}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(str_of(&m, "state"), "running", "{m:#}");
    assert_eq!(str_of(&m, "profile"), profile, "{m:#}");
    let facts = &m["facts"];
    assert_eq!(
        facts["memory_bytes"].as_u64(),
        Some(GUEST_MIB << 20),
        "{m:#}"
    );
    assert_eq!(
        facts["disks"].as_array().map(Vec::len),
        Some(vm.disks),
        "{m:#}"
    );
    assert_eq!(facts["cpus"].as_u64(), Some(1), "{m:#}");
    assert_eq!(str_of(facts, "vendor"), "mayu-test", "{m:#}");
    assert_eq!(str_of(facts, "product"), "qemu-boot", "{m:#}");
    let nic_mac = facts
        .pointer("/nics/0/mac")
        .and_then(Value::as_str)
        .unwrap_or("");
    assert!(nic_mac.eq_ignore_ascii_case(vm.mac), "{m:#}");
    assert_eq!(
        facts.pointer("/nics/0/link"),
        Some(&Value::Bool(true)),
        "{m:#}"
    );

    // The git audit trail: every step is a commit by the machine itself, oldest first.
    let history = api
        .get(&format!("/api/v1/machines/{id}/history"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut entries: Vec<&Value> = history
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    entries.reverse();
    let messages: Vec<&str> = entries.iter().map(|e| str_of(e, "message")).collect();
    let expected = [
        "registered".to_string(),
        format!("assigned to {profile}"),
        "boot complete".to_string(),
    ];
    let mut it = entries.iter();
    for want in &expected {
        let entry = it
            .find(|e| str_of(e, "message").contains(want.as_str()))
            .unwrap_or_else(|| {
                panic!("no commit `{want}` in order in {id}'s history: {messages:#?}")
            });
        assert_eq!(str_of(entry, "author"), id, "commit `{want}`: {entry:#}");
    }
    // The same trail in the inventory's git repository itself.
    let log = run(Command::new("git")
        .args(["-C"])
        .arg(lab.file("inventory"))
        .args(["log", "--format=%an %s%n%b", "--", &format!("{id}.json")]))
    .unwrap_or_else(|e| panic!("{e}"));
    for want in &expected {
        assert!(
            log.contains(want.as_str()),
            "git log lacks `{want}`:\n{log}"
        );
    }
}

async fn scenario(lab: &Lab, mayu: &Path) {
    let config = lab.file("config.yaml");
    fs::write(&config, config_text(lab)).expect("write config");
    let tftp = lab.file("tftproot");
    fs::create_dir_all(&tftp).expect("tftproot");
    for f in ["undionly.kpxe", "ipxe.efi", "snponly.efi"] {
        let src = Path::new("/usr/lib/ipxe").join(f);
        if src.is_file() {
            fs::copy(&src, tftp.join(f)).expect("copy boot program");
        }
    }
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
    // The boot port answers and mayu wrote its first admin token.
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

    // BIOS first; the UEFI machine starts once the first has its profile, so it finds `first`
    // full and lands in `second`.
    start_vm(lab, &BIOS).expect("start the BIOS machine");
    let bios_id = BIOS.id();
    wait_for(
        lab,
        "the BIOS machine to be assigned",
        MACHINE_TIMEOUT,
        async || {
            api.get(&format!("/api/v1/machines/{bios_id}"))
                .await
                .ok()
                .filter(|m| str_of(m, "profile") == "first")
        },
    )
    .await;
    start_vm(lab, &UEFI).expect("start the UEFI machine");
    boot_and_check(lab, &api, &BIOS, "first").await;
    boot_and_check(lab, &api, &UEFI, "second").await;

    let machines = api.get("/api/v1/machines").await.expect("list machines");
    let mut placed: Vec<(String, String)> = machines
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        str_of(m, "id").to_string(),
                        str_of(m, "profile").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    placed.sort();
    assert_eq!(
        placed,
        vec![
            (BIOS.id(), "first".to_string()),
            (UEFI.id(), "second".to_string())
        ]
    );
}

#[test]
fn bios_and_uefi_machines_network_boot_through_mayu() {
    if let Some(reason) = missing_prerequisite() {
        return not_runnable(&reason);
    }
    for script in ["build-discovery.sh", "build-test-image.sh"] {
        if let Err(e) = run(&mut Command::new(repo().join("scripts").join(script))) {
            return not_runnable(&format!("cannot build the images: {e}"));
        }
    }
    let mayu = match mayu_binary() {
        Ok(m) => m,
        Err(e) => panic!("cannot build mayu: {e}"),
    };
    let lab = match Lab::create() {
        Ok(lab) => lab,
        Err(e) => return not_runnable(&format!("cannot create the lab network: {e}")),
    };
    // One thread inside the namespace drives everything; the guard cleans up whatever happens.
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
    drop(lab);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
