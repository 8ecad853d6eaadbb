//! Firmware network boot on every path real servers take, through mayu's dnsmasq child and boot
//! HTTP, with mayu configured as `scripts/lab.sh` runs it (`scripts/lab-config.yaml`; only its
//! paths are moved into a temp folder):
//!
//! - **UEFI firmware PXE** (OVMF's own PXE client: the NIC has no iPXE option ROM) → DHCP →
//!   TFTP `ipxe.efi` → iPXE asks DHCP again (user class `iPXE`) → `/boot.ipxe` → the machine
//!   registers. Real servers mostly lack iPXE in their NIC ROM; this is their path.
//! - **UEFI HTTP boot** (OVMF with its PXE clients switched off, so only its HTTP boot client
//!   runs): DHCP with vendor class `HTTPClient:Arch:00016` → an `http://…/boot/ipxe.efi` URL →
//!   iPXE over HTTP → registers, with no TFTP at all.
//! - **BIOS PXE** (`undionly.kpxe`): every PXE ROM QEMU has is already iPXE, so no QEMU machine
//!   can play plain BIOS PXE firmware. A DHCP client in a client namespace sends what BIOS PXE
//!   firmware sends (vendor class `PXEClient:Arch:00000:UNDI:002001`, option 93 = 0) and
//!   tftp-hpa's `tftp` fetches the offered program, which must equal Debian's undionly.kpxe.
//!
//! Both in `full` DHCP mode and in `proxy` mode, where busybox `udhcpd` in a namespace of its
//! own hands out the addresses and mayu's dnsmasq adds only the boot options. (A proxy answers
//! PXE clients only; UEFI HTTP boot is tested in full mode.)
//!
//! Needs root, QEMU and the Debian packages `scripts/install-deps.sh` installs. Without them it
//! returns early with the reason, except under `CI=true`, where it fails. `MAYU_BIN` names a
//! built `mayu`, else the test builds it; `MAYU_TEST_KEEP=1` keeps the temp folder.

use std::fmt::Write as _;
use std::fs;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
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
const IPXE: &str = "/usr/lib/ipxe";
/// The client namespace's address (outside the DHCP range) for TFTP and HTTP fetches.
const CLIENT_ADDR: &str = "10.77.0.2";
const CLIENT_MAC: &str = "52:54:00:77:02:02";
/// The other DHCP server in proxy mode.
const DHCPD_ADDR: &str = "10.77.0.254";
/// Bounds that only stop a hung run: firmware → iPXE → registration takes ~20 s on an idle
/// core under software emulation.
const MACHINE_TIMEOUT: Duration = Duration::from_secs(300);
const START_TIMEOUT: Duration = Duration::from_secs(60);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// At most two QEMU machines at once on this 2-core budget: the tests take turns.
static MACHINES: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Why this machine cannot run the test, if it cannot.
fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, taps)".into());
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("dnsmasq", "dnsmasq-base"),
        ("busybox", "busybox-static"),
        ("tftp", "tftp-hpa"),
        ("git", "git"),
    ] {
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
        (OVMF_CODE, "ovmf"),
        ("/usr/lib/ipxe/ipxe.efi", "ipxe"),
        ("/usr/lib/ipxe/undionly.kpxe", "ipxe"),
    ] {
        if !Path::new(file).is_file() {
            return Some(format!("{file} missing (Debian package {package})"));
        }
    }
    None
}

fn not_runnable(reason: &str) {
    if in_ci() {
        panic!("the QEMU firmware test cannot run in CI: {reason}");
    }
    eprintln!("qemu_firmware: not run: {reason}");
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
    // <target>/debug/deps/qemu_firmware-HASH → <target>/debug/mayu
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

/// The namespaces a scenario made: `server` (the lab bridge, mayu, the machines' taps),
/// `client` (a veth on the bridge for the DHCP/TFTP/HTTP clients) and, in proxy mode, `dhcpd`
/// (the other DHCP server). Dropping it stops what it started (by pid: TERM, then KILL), kills
/// anything left inside its namespaces, and removes them and the temp folder.
struct Lab {
    server: String,
    client: String,
    dhcpd: Option<String>,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    children: Mutex<Vec<(String, Child)>>,
}

impl Lab {
    fn create(tag: &str, with_dhcpd: bool) -> Result<Lab, String> {
        let base = format!("mayu-fw-{}-{tag}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("mayu-firmware-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let path = dir.path().to_path_buf();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        let lab = Lab {
            server: format!("{base}-s"),
            client: format!("{base}-c"),
            dhcpd: with_dhcpd.then(|| format!("{base}-d")),
            dir: Some(dir),
            path,
            children: Mutex::new(Vec::new()),
        };
        let s = lab.server.as_str();
        ip(&["netns", "add", s])?;
        ip(&["netns", "add", &lab.client])?;
        ip(&["-n", s, "link", "set", "lo", "up"])?;
        ip(&["-n", s, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", s, "addr", "add", &format!("{ADDR}/24"), "dev", "br0"])?;
        // A ULA for dnsmasq's router advertisements: iPXE otherwise waits ~13 s for IPv6.
        ip(&["-n", s, "addr", "add", "fd77:77::1/64", "dev", "br0"])?;
        ip(&["-n", s, "link", "set", "br0", "up"])?;
        for tap in ["tap0", "tap1"] {
            ip(&["-n", s, "tuntap", "add", "dev", tap, "mode", "tap"])?;
            ip(&["-n", s, "link", "set", tap, "master", "br0"])?;
            ip(&["-n", s, "link", "set", tap, "up"])?;
        }
        lab.veth("vc0", &lab.client, CLIENT_ADDR, Some(CLIENT_MAC))?;
        if let Some(d) = &lab.dhcpd {
            ip(&["netns", "add", d])?;
            lab.veth("vd0", d, DHCPD_ADDR, None)?;
        }
        Ok(lab)
    }

    /// A veth from the bridge (`bridge_end`) to `eth0` in namespace `ns`, with `addr`.
    fn veth(
        &self,
        bridge_end: &str,
        ns: &str,
        addr: &str,
        mac: Option<&str>,
    ) -> Result<(), String> {
        let s = self.server.as_str();
        ip(&[
            "link", "add", bridge_end, "netns", s, "type", "veth", "peer", "name", "eth0", "netns",
            ns,
        ])?;
        ip(&["-n", s, "link", "set", bridge_end, "master", "br0"])?;
        ip(&["-n", s, "link", "set", bridge_end, "up"])?;
        if let Some(mac) = mac {
            ip(&["-n", ns, "link", "set", "eth0", "address", mac])?;
        }
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        Ok(())
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Starts `cmd` inside namespace `ns`; `ip netns exec` execs it, so the pid is its own.
    fn spawn(&self, ns: &str, name: &str, cmd: &[&str]) -> Result<(), String> {
        let log = self.file(&format!("{name}.log"));
        let out = fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", ns])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // A test process killed outright (SIGPIPE from a closed pipe, say) runs no Drop: its
        // machines and mayu must not outlive it. The signal survives `ip netns exec`'s exec.
        // SAFETY: prctl(2) only, which is async-signal-safe, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = command
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

    /// Stops one named process (a machine that has shown what it had to).
    fn stop(&self, name: &str) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, child)) = children.iter_mut().find(|(n, _)| n == name) {
            stop(child);
        }
    }

    fn namespaces(&self) -> Vec<&str> {
        let mut all = vec![self.server.as_str(), self.client.as_str()];
        all.extend(self.dhcpd.as_deref());
        all
    }

    /// Runs `argv` in the client namespace; its output (stdout + stderr) and success.
    async fn client(&self, argv: &[&str]) -> (bool, String) {
        let out = tokio::time::timeout(
            CLIENT_TIMEOUT,
            tokio::process::Command::new("ip")
                .args(["netns", "exec", &self.client])
                .args(argv)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{argv:?} did not finish"))
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// busybox udhcpc once, as a firmware would ask (`extra`: vendor class, option 93); its
    /// script prints what the offer said. Returns the printed `key=value` pairs of the lease.
    async fn udhcpc(&self, extra: &[&str]) -> (bool, String) {
        let script = self.file("udhcpc.sh");
        if !script.exists() {
            fs::write(
                &script,
                "#!/bin/sh\n[ \"$1\" = bound ] || exit 0\necho \"LEASE ip=$ip serverid=$serverid siaddr=$siaddr boot_file=$boot_file bootfile=$bootfile\"\n",
            )
            .expect("udhcpc script");
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let script = script.to_string_lossy().into_owned();
        let mut argv = vec![
            // Real firmware waits 4, 8, 16 s between tries; with two TCG machines booting on
            // the same two cores dnsmasq (which pings an address before offering it) can
            // answer late, so wait as patiently as firmware does.
            "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "8", "-T", "4", "-s", &script,
        ];
        argv.extend_from_slice(extra);
        self.client(&argv).await
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
        {
            let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
            // Machines first, mayu last: it stops its dnsmasq child on TERM.
            for (_, child) in children.iter_mut().rev() {
                stop(child);
            }
            children.clear();
        }
        for ns in self.namespaces() {
            // Anything still in our namespaces was started by us (an orphaned dnsmasq, say).
            if let Ok(pids) = ip(&["netns", "pids", ns]) {
                for pid in pids
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    // SAFETY: kill(2) on a process inside a namespace this test created.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("qemu_firmware: cleanup: {e}");
            }
        }
        if std::env::var("MAYU_TEST_KEEP").is_ok_and(|v| v == "1") {
            if let Some(dir) = self.dir.take() {
                eprintln!("qemu_firmware: kept {}", dir.keep().display());
            }
        }
    }
}

/// Moves the calling thread into the namespace, so its sockets live there.
fn enter_namespace(ns: &str) -> Result<(), String> {
    let f = fs::File::open(format!("/run/netns/{ns}")).map_err(|e| format!("open netns: {e}"))?;
    // SAFETY: setns(2) with a valid namespace fd; it affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!("setns: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// `scripts/lab-config.yaml` with its paths moved into the lab folder (templates and images
/// stay the repository's) and its DHCP mode set to `mode`. Every rewrite must hit, so a change
/// of the lab config's shape fails here rather than testing something else.
fn lab_config(lab: &Lab, mode: &str) -> String {
    let source = repo().join("scripts/lab-config.yaml");
    let text = fs::read_to_string(&source).expect("scripts/lab-config.yaml");
    let repo = repo();
    let moved = [
        ("inventory:", lab.file("inventory")),
        ("logs:", lab.file("logs")),
        ("runtime:", lab.file("run")),
        // Absolute and normalised: dnsmasq refuses every file under a root with `/../`.
        ("tftproot:", lab.file("tftproot")),
        ("templates:", repo.join("templates")),
        ("images:", repo.join("images")),
        ("  tokens:", lab.file("tokens.json")),
        ("    mode:", PathBuf::from(mode)),
    ];
    let mut hits = vec![0; moved.len()];
    let out: Vec<String> = text
        .lines()
        .map(|line| {
            for (i, (key, value)) in moved.iter().enumerate() {
                if line.starts_with(key) {
                    hits[i] += 1;
                    return format!("{key} {}", value.display());
                }
            }
            line.to_string()
        })
        .collect();
    for ((key, _), n) in moved.iter().zip(hits) {
        assert_eq!(n, 1, "`{key}` appears {n} times in {}", source.display());
    }
    out.join("\n") + "\n"
}

struct Vm {
    name: &'static str,
    serial: &'static str,
    mac: &'static str,
    tap: &'static str,
    /// OVMF with its PXE clients off: only UEFI HTTP boot is left.
    http_boot: bool,
}

impl Vm {
    fn id(&self) -> String {
        self.serial.to_lowercase()
    }
}

const PXE_VM: Vm = Vm {
    name: "ovmf-pxe",
    serial: "MAYU-FW-PXE",
    mac: "52:54:00:77:02:10",
    tap: "tap0",
    http_boot: false,
};
const HTTP_VM: Vm = Vm {
    name: "ovmf-http",
    serial: "MAYU-FW-HTTP",
    mac: "52:54:00:77:02:11",
    tap: "tap1",
    http_boot: true,
};

/// A UEFI machine whose NIC has no option ROM (`romfile=`): OVMF's own network stack boots it.
fn start_vm(lab: &Lab, vm: &Vm) -> Result<(), String> {
    let vars = lab.file(&format!("{}.vars.fd", vm.name));
    fs::copy(OVMF_VARS, &vars).map_err(|e| format!("copy {OVMF_VARS}: {e}"))?;
    let mut args: Vec<String> = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-name",
        vm.name,
        "-m",
        "256",
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
        "-no-reboot",
    ]
    .map(String::from)
    .to_vec();
    args.extend([
        "-serial".into(),
        format!(
            "file:{}",
            lab.file(&format!("{}.serial.log", vm.name)).display()
        ),
        "-smbios".into(),
        format!(
            "type=1,manufacturer=mayu-test,product=qemu-firmware,serial={}",
            vm.serial
        ),
        "-netdev".into(),
        format!("tap,id=n0,ifname={},script=no,downscript=no", vm.tap),
        "-device".into(),
        format!(
            "virtio-net-pci,netdev=n0,mac={},bootindex=1,romfile=",
            vm.mac
        ),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
    ]);
    if vm.http_boot {
        // OVMF then offers only its "UEFI HTTPv4/v6" boot options for the NIC.
        for knob in ["IPv4PXESupport", "IPv6PXESupport"] {
            args.push("-fw_cfg".into());
            args.push(format!("name=opt/org.tianocore/{knob},string=n"));
        }
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.spawn(&lab.server, vm.name, &refs)
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
        "ovmf-pxe.serial.log",
        "ovmf-http.serial.log",
        "ovmf-pxe.log",
        "ovmf-http.log",
        "udhcpd.log",
    ] {
        let path = lab.file(name);
        if path.exists() {
            let _ = writeln!(s, "--- {name} (tail) ---\n{}", tail(&path, 30));
        }
    }
    s
}

/// The API as seen from inside the server namespace, plus the events collected from its stream.
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
            .timeout(Duration::from_secs(10))
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

    /// The first collected event that satisfies `pred`, waiting for it up to `timeout`.
    async fn event(
        &self,
        lab: &Lab,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_for(lab, what, timeout, async || {
            self.events().into_iter().find(|e| pred(e))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\nevents:\n{}", self.summaries()))
    }

    fn summaries(&self) -> String {
        self.events()
            .iter()
            .map(|e| format!("  {} {}", e["seq"], str_of(e, "summary")))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Polls `check` until it yields a value; `Err` on timeout or when mayu has exited.
async fn wait_for<T>(
    lab: &Lab,
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if let Some(status) = lab.exited("mayu") {
            return Err(format!(
                "mayu exited ({status}) while waiting for {what}\n{}",
                diagnostics(lab)
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "timed out waiting for {what}\n{}",
                diagnostics(lab)
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn is_dhcp_of(e: &Value, mac: &str) -> bool {
    str_of(e, "type") == "dhcp" && str_of(e, "mac").eq_ignore_ascii_case(mac)
}

/// Fills the TFTP root with the repository's own script, starts mayu in the server namespace
/// and waits for its boot port and admin token; then follows its events.
async fn start_mayu(lab: &Lab, mayu: &Path, mode: &str) -> Api {
    run(Command::new(repo().join("scripts/fill-tftproot.sh")).arg(lab.file("tftproot")))
        .expect("scripts/fill-tftproot.sh");
    let config = lab.file("config.yaml");
    fs::write(&config, lab_config(lab, mode)).expect("write config");
    let cfg = config.to_string_lossy().into_owned();
    let bin = mayu.to_string_lossy().into_owned();
    lab.spawn(&lab.server, "mayu", &[&bin, "--headless", "--config", &cfg])
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
                .get(format!("http://{ADDR}:{BOOT_PORT}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let token = fs::read_to_string(&token_file).ok()?;
            boot.then(|| token.trim().to_string())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let api = Api {
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client"),
        token,
        events: Arc::new(Mutex::new(Vec::new())),
    };
    api.follow_events();
    // dnsmasq answers only once it runs.
    wait_for(lab, "dnsmasq running", START_TIMEOUT, async || {
        api.events().into_iter().find(|e| {
            str_of(e, "type") == "service"
                && str_of(e, "name") == "dnsmasq"
                && str_of(e, "status") == "running"
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\nevents:\n{}", api.summaries()));
    api
}

/// `key=value` from the udhcpc script's `LEASE` line.
fn lease_field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    let line = out.lines().find(|l| l.starts_with("LEASE "))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .filter(|v| !v.is_empty())
}

fn same_bytes(got: &Path, want: &str) {
    let got_bytes = fs::read(got).unwrap_or_else(|e| panic!("{}: {e}", got.display()));
    let want_bytes = fs::read(want).unwrap_or_else(|e| panic!("{want}: {e}"));
    assert!(
        got_bytes == want_bytes,
        "{} ({} bytes) differs from {want} ({} bytes)",
        got.display(),
        got_bytes.len(),
        want_bytes.len()
    );
}

/// BIOS PXE firmware's request, then its TFTP fetch from the offered server, as the client
/// namespace plays it. In proxy mode the lease comes from udhcpd and the boot file from mayu's
/// proxy answer (an event); in full mode both from mayu's dnsmasq.
async fn bios_pxe_client(lab: &Lab, api: &Api, proxy: bool) {
    let pxe = ["-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"];
    let answer = if proxy {
        // Firmware takes its address from the DHCP server's offer and its boot program from
        // the proxy: its offer carries a boot menu, and the firmware asks mayu's dnsmasq for
        // the chosen item on port 4011. udhcpc cannot do that; a few lines of BOOTP here can.
        let ns = lab.client.clone();
        // Its own thread: entering the client namespace must not leak into a pooled thread.
        let thread = std::thread::spawn(move || pxe::boot_server_discovery(&ns));
        let found = tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("join")
            .expect("the PXE client thread");
        let found = found.unwrap_or_else(|e| panic!("BIOS PXE through the proxy: {e}"));
        assert_eq!(
            found.address_from,
            DHCPD_ADDR.parse::<std::net::Ipv4Addr>().ok(),
            "{found:?}"
        );
        assert_eq!(found.boot_file, "undionly.kpxe", "{found:?}");
        assert_eq!(found.next_server.to_string(), ADDR, "{found:?}");
        // dnsmasq's proxy answer: no address, the boot program for arch 0.
        api.event(
            lab,
            "mayu's proxy answer to the BIOS client",
            CLIENT_TIMEOUT,
            |e| {
                is_dhcp_of(e, CLIENT_MAC)
                    && str_of(e, "message") == "PXE"
                    && str_of(e, "detail").contains("boot undionly.kpxe")
            },
        )
        .await
    } else {
        let (ok, out) = lab.udhcpc(&pxe).await;
        assert!(
            ok,
            "udhcpc as BIOS PXE firmware got no lease:\n{out}\nmayu's events:\n{}",
            api.summaries()
        );
        let file = lease_field(&out, "boot_file").or_else(|| lease_field(&out, "bootfile"));
        assert_eq!(file, Some("undionly.kpxe"), "udhcpc says:\n{out}");
        assert_eq!(lease_field(&out, "siaddr"), Some(ADDR), "{out}");
        api.event(lab, "the BIOS client's DHCPACK", CLIENT_TIMEOUT, |e| {
            is_dhcp_of(e, CLIENT_MAC)
                && str_of(e, "message") == "DHCPACK"
                && str_of(e, "detail").contains("boot undionly.kpxe")
        })
        .await
    };
    assert!(str_of(&answer, "detail").contains("bios"), "{answer:#}");

    let got = lab.file("got-undionly.kpxe");
    let (ok, out) = lab
        .client(&[
            "tftp",
            "-m",
            "binary",
            ADDR,
            "-c",
            "get",
            "undionly.kpxe",
            &got.to_string_lossy(),
        ])
        .await;
    assert!(ok, "tftp undionly.kpxe failed:\n{out}");
    same_bytes(&got, &format!("{IPXE}/undionly.kpxe"));
    api.event(lab, "TFTP sent undionly.kpxe", CLIENT_TIMEOUT, |e| {
        str_of(e, "type") == "tftp"
            && e["ok"] == Value::Bool(true)
            && str_of(e, "file") == "undionly.kpxe"
            && str_of(e, "client") == CLIENT_ADDR
    })
    .await;
}

/// UEFI HTTP boot's request (vendor class `HTTPClient`, arch 16, asking for option 67 as OVMF
/// does): the offer names an HTTP URL to ipxe.efi on the boot port, and that URL serves it.
async fn http_boot_client(lab: &Lab, api: &Api) -> String {
    let (ok, out) = lab
        .udhcpc(&[
            "-V",
            "HTTPClient:Arch:00016",
            "-x",
            "0x5d:0010",
            "-O",
            "bootfile",
        ])
        .await;
    assert!(
        ok,
        "udhcpc as a UEFI HTTP boot client got no lease:\n{out}\nmayu's events:\n{}",
        api.summaries()
    );
    let url = lease_field(&out, "bootfile")
        .or_else(|| lease_field(&out, "boot_file"))
        .unwrap_or_else(|| panic!("no boot file in the offer:\n{out}"))
        .to_string();
    assert_eq!(url, format!("http://{ADDR}:{BOOT_PORT}/boot/ipxe.efi"));
    let ev = api
        .event(lab, "the HTTP boot client's DHCPACK", CLIENT_TIMEOUT, |e| {
            is_dhcp_of(e, CLIENT_MAC)
                && str_of(e, "message") == "DHCPACK"
                && str_of(e, "detail").contains("efi64 http boot")
        })
        .await;
    assert!(
        str_of(&ev, "detail").contains(&format!("boot {url}")),
        "{ev:#}"
    );

    let got = lab.file("got-ipxe.efi");
    let (ok, out) = lab
        .client(&["busybox", "wget", "-q", "-O", &got.to_string_lossy(), &url])
        .await;
    assert!(ok, "GET {url} failed:\n{out}");
    same_bytes(&got, &format!("{IPXE}/ipxe.efi"));
    // Anything else in the TFTP root (or outside it) is not served.
    let (ok, _) = lab
        .client(&[
            "busybox",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            &format!("http://{ADDR}:{BOOT_PORT}/boot/..%2Fconfig.yaml"),
        ])
        .await;
    assert!(!ok, "the boot program route served a file outside its list");
    url
}

/// The machine's address as its DHCPACK gave it.
async fn acked_ip(lab: &Lab, api: &Api, vm: &Vm) -> String {
    let ack = api
        .event(
            lab,
            &format!("{}'s DHCPACK", vm.name),
            MACHINE_TIMEOUT,
            |e| is_dhcp_of(e, vm.mac) && matches!(str_of(e, "message"), "DHCPACK" | "PXE"),
        )
        .await;
    str_of(&ack, "ip").to_string()
}

/// Waits until the machine has registered itself through iPXE (`/ipxe?mac=…&serial=…`), then
/// stops it:
/// what follows (discovery) is another test's subject.
async fn registered(lab: &Lab, api: &Api, vm: &Vm) {
    let id = vm.id();
    let found = wait_for(
        lab,
        &format!("{} ({id}) to register", vm.name),
        MACHINE_TIMEOUT,
        async || {
            // The event first: a machine that registered, ran discovery and powered off while
            // the test watched another one has done what this waits for.
            let added = api.events().into_iter().find(|e| {
                str_of(e, "type") == "machine_added"
                    && e.pointer("/machine/id").and_then(Value::as_str) == Some(id.as_str())
            });
            if let Some(e) = added {
                return Some(Ok(e));
            }
            lab.exited(vm.name)
                .map(|status| Err(format!("qemu {} exited ({status})", vm.name)))
        },
    )
    .await
    .and_then(|r| r);
    if let Err(e) = found {
        panic!(
            "{e}\nevents:\n{}\n--- {} serial (tail) ---\n{}",
            api.summaries(),
            vm.name,
            tail(&lab.file(&format!("{}.serial.log", vm.name)), 40)
        );
    }
    lab.stop(vm.name);
    let m = api
        .get(&format!("/api/v1/machines/{id}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let macs: Vec<&str> = m["macs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        macs.iter().any(|mac| mac.eq_ignore_ascii_case(vm.mac)),
        "{m:#}"
    );
    assert_eq!(str_of(&m, "serial"), vm.serial, "{m:#}");
}

/// iPXE, once loaded, asked DHCP again as iPXE and was handed the boot script's URL.
fn ipxe_asked_again(api: &Api, vm: &Vm) {
    let script = format!("boot http://{ADDR}:{BOOT_PORT}/boot.ipxe");
    assert!(
        api.events().iter().any(|e| is_dhcp_of(e, vm.mac)
            && str_of(e, "detail").contains("user class iPXE")
            && str_of(e, "detail").contains(&script)),
        "{} never asked DHCP as iPXE:\n{}",
        vm.name,
        api.summaries()
    );
}

async fn full_mode(lab: &Lab, mayu: &Path) {
    let api = start_mayu(lab, mayu, "full").await;
    start_vm(lab, &PXE_VM).expect("start the PXE machine");
    start_vm(lab, &HTTP_VM).expect("start the HTTP boot machine");

    // While the machines boot, the client namespace plays the firmware QEMU cannot.
    bios_pxe_client(lab, &api, false).await;
    let url = http_boot_client(lab, &api).await;

    // OVMF's own PXE: DHCP (arch 7) → TFTP ipxe.efi → iPXE → DHCP as iPXE → registers.
    let pxe_ip = acked_ip(lab, &api, &PXE_VM).await;
    api.event(lab, "the PXE machine's offer", MACHINE_TIMEOUT, |e| {
        is_dhcp_of(e, PXE_VM.mac)
            && str_of(e, "message") == "DHCPOFFER"
            && str_of(e, "detail").contains("efi64")
            && str_of(e, "detail").contains("boot ipxe.efi")
    })
    .await;
    api.event(
        lab,
        "TFTP sent ipxe.efi to the PXE machine",
        MACHINE_TIMEOUT,
        |e| {
            str_of(e, "type") == "tftp"
                && e["ok"] == Value::Bool(true)
                && str_of(e, "file") == "ipxe.efi"
                && str_of(e, "client") == pxe_ip
        },
    )
    .await;
    registered(lab, &api, &PXE_VM).await;
    ipxe_asked_again(&api, &PXE_VM);

    // UEFI HTTP boot: DHCP (HTTPClient, arch 16) → iPXE over HTTP → registers; no TFTP.
    let http_ip = acked_ip(lab, &api, &HTTP_VM).await;
    // The firmware lists option 67 in its request: the URL goes out as that option.
    api.event(lab, "the HTTP boot machine's offer", MACHINE_TIMEOUT, |e| {
        is_dhcp_of(e, HTTP_VM.mac)
            && str_of(e, "message") == "DHCPOFFER"
            && str_of(e, "detail").contains("efi64 http boot")
            && str_of(e, "detail").contains(&format!("boot {url}"))
    })
    .await;
    api.event(lab, "ipxe.efi sent over HTTP", MACHINE_TIMEOUT, |e| {
        str_of(e, "type") == "boot_step"
            && str_of(e, "detail") == format!("boot program ipxe.efi sent over HTTP to {http_ip}")
    })
    .await;
    registered(lab, &api, &HTTP_VM).await;
    ipxe_asked_again(&api, &HTTP_VM);

    let tftp: Vec<Value> = api
        .events()
        .into_iter()
        .filter(|e| str_of(e, "type") == "tftp")
        .collect();
    assert!(
        tftp.iter().all(|e| str_of(e, "client") != http_ip),
        "the HTTP boot machine ({http_ip}) spoke TFTP:\n{}",
        api.summaries()
    );
    // No failure anywhere (a `/../` TFTP root, say, would show as "Permission denied"). UEFI
    // asks for the size first and then aborts that transfer: error 8 is part of its protocol.
    assert!(
        tftp.iter().all(|e| e["ok"] == Value::Bool(true)
            || str_of(e, "detail").starts_with("client sent error 8 ")),
        "a TFTP transfer failed:\n{}",
        api.summaries()
    );
}

async fn proxy_mode(lab: &Lab, mayu: &Path) {
    // The other DHCP server: addresses only, no boot options.
    let dhcpd = lab
        .dhcpd
        .clone()
        .expect("the proxy lab has a DHCP namespace");
    let conf = lab.file("udhcpd.conf");
    fs::write(
        &conf,
        format!(
            "start 10.77.0.100\nend 10.77.0.200\ninterface eth0\nlease_file {}\npidfile {}\noption subnet 255.255.255.0\noption lease 3600\n",
            lab.file("udhcpd.leases").display(),
            lab.file("udhcpd.pid").display()
        ),
    )
    .expect("udhcpd.conf");
    fs::write(lab.file("udhcpd.leases"), b"").expect("udhcpd.leases");
    lab.spawn(
        &dhcpd,
        "udhcpd",
        &["busybox", "udhcpd", "-f", &conf.to_string_lossy()],
    )
    .expect("start udhcpd");
    let api = start_mayu(lab, mayu, "proxy").await;
    start_vm(lab, &PXE_VM).expect("start the PXE machine");

    bios_pxe_client(lab, &api, true).await;

    // OVMF's own PXE through the proxy: the address from udhcpd, ipxe.efi from mayu.
    api.event(
        lab,
        "mayu's proxy answer to the PXE machine",
        MACHINE_TIMEOUT,
        |e| {
            is_dhcp_of(e, PXE_VM.mac)
                && str_of(e, "message") == "PXE"
                && str_of(e, "detail").contains("boot ipxe.efi")
        },
    )
    .await;
    api.event(lab, "TFTP sent ipxe.efi", MACHINE_TIMEOUT, |e| {
        str_of(e, "type") == "tftp"
            && e["ok"] == Value::Bool(true)
            && str_of(e, "file") == "ipxe.efi"
    })
    .await;
    registered(lab, &api, &PXE_VM).await;
    ipxe_asked_again(&api, &PXE_VM);
    assert!(
        api.events()
            .iter()
            .filter(|e| str_of(e, "type") == "dhcp")
            .all(|e| str_of(e, "ip").is_empty() || str_of(e, "message") == "PXE"),
        "a proxy hands out no addresses:\n{}",
        api.summaries()
    );
}

/// A scenario run inside a lab's server namespace.
type Scenario = for<'a> fn(&'a Lab, &'a Path) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Sets up a lab, runs `scenario` on a thread inside its server namespace, cleans up.
fn in_lab(tag: &str, with_dhcpd: bool, scenario: Scenario) {
    if let Some(reason) = missing_prerequisite() {
        return not_runnable(&reason);
    }
    let _turn = MACHINES.lock().unwrap_or_else(|p| p.into_inner());
    let mayu = match mayu_binary() {
        Ok(m) => m,
        Err(e) => panic!("cannot build mayu: {e}"),
    };
    let lab = match Lab::create(tag, with_dhcpd) {
        Ok(lab) => lab,
        Err(e) => return not_runnable(&format!("cannot create the lab network: {e}")),
    };
    let outcome = std::thread::scope(|s| {
        s.spawn(|| {
            enter_namespace(&lab.server).expect("enter the namespace");
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

#[test]
fn firmware_pxe_http_boot_and_bios_pxe_in_full_mode() {
    in_lab("full", false, |lab, mayu| Box::pin(full_mode(lab, mayu)));
}

#[test]
fn firmware_pxe_and_bios_pxe_through_a_proxy() {
    in_lab("proxy", true, |lab, mayu| Box::pin(proxy_mode(lab, mayu)));
}

/// Just enough of a BIOS PXE client (PXE spec 2.1) to follow a proxyDHCP answer: DISCOVER with
/// the PXE vendor class, collect the DHCP server's and the proxy's offers, then ask the proxy
/// (port 4011) for the first boot menu item, as firmware does.
mod pxe {
    use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
    use std::time::{Duration, Instant};

    const VENDOR: &[u8] = b"PXEClient:Arch:00000:UNDI:002001";
    const DISCOVER: u8 = 1;
    const OFFER: u8 = 2;
    const REQUEST: u8 = 3;
    const ACK: u8 = 5;

    #[derive(Debug)]
    pub struct Found {
        /// the server whose offer carried an address.
        pub address_from: Option<Ipv4Addr>,
        pub boot_file: String,
        pub next_server: Ipv4Addr,
    }

    struct Reply {
        kind: u8,
        yiaddr: Ipv4Addr,
        siaddr: Ipv4Addr,
        file: String,
        server_id: Option<Ipv4Addr>,
        vendor_class: Vec<u8>,
        /// option 43's sub-options (PXE vendor options).
        pxe: Vec<(u8, Vec<u8>)>,
    }

    fn mac() -> [u8; 6] {
        let mut m = [0u8; 6];
        for (i, part) in super::CLIENT_MAC.split(':').enumerate() {
            m[i] = u8::from_str_radix(part, 16).unwrap_or(0);
        }
        m
    }

    fn packet(kind: u8, xid: u32, ciaddr: Ipv4Addr, extra: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 236];
        p[0] = 1; // BOOTREQUEST
        p[1] = 1; // Ethernet
        p[2] = 6;
        p[4..8].copy_from_slice(&xid.to_be_bytes());
        if ciaddr.is_unspecified() {
            p[10] = 0x80; // broadcast replies: no address yet
        }
        p[12..16].copy_from_slice(&ciaddr.octets());
        p[28..34].copy_from_slice(&mac());
        p.extend([99, 130, 83, 99]);
        p.extend([53, 1, kind]);
        p.extend([60, VENDOR.len() as u8]);
        p.extend(VENDOR);
        p.extend([93, 2, 0, 0]); // client architecture: x86 BIOS
        p.extend([94, 3, 1, 2, 1]); // UNDI 2.1
        p.extend([97, 17, 0]);
        p.extend([0x77u8; 16]); // client UUID
        p.extend([55, 6, 1, 3, 43, 60, 66, 67]);
        p.extend(extra);
        p.push(255);
        p
    }

    fn parse(p: &[u8], xid: u32) -> Option<Reply> {
        if p.len() < 240
            || p[0] != 2
            || p[4..8] != xid.to_be_bytes()
            || p[236..240] != [99, 130, 83, 99]
        {
            return None;
        }
        let ip = |a: &[u8]| Ipv4Addr::new(a[0], a[1], a[2], a[3]);
        let file_end = p[108..236].iter().position(|&b| b == 0).unwrap_or(128);
        let mut r = Reply {
            kind: 0,
            yiaddr: ip(&p[16..20]),
            siaddr: ip(&p[20..24]),
            file: String::from_utf8_lossy(&p[108..108 + file_end]).into_owned(),
            server_id: None,
            vendor_class: Vec::new(),
            pxe: Vec::new(),
        };
        let mut i = 240;
        while i < p.len() {
            let code = p[i];
            if code == 255 {
                break;
            }
            if code == 0 {
                i += 1;
                continue;
            }
            let len = *p.get(i + 1)? as usize;
            let value = p.get(i + 2..i + 2 + len)?;
            match code {
                53 => r.kind = *value.first()?,
                54 if len == 4 => r.server_id = Some(ip(value)),
                60 => r.vendor_class = value.to_vec(),
                67 => {
                    r.file = String::from_utf8_lossy(value)
                        .trim_end_matches('\0')
                        .to_string()
                }
                43 => {
                    let mut j = 0;
                    while j + 1 < value.len() && value[j] != 255 {
                        let l = value[j + 1] as usize;
                        let v = value.get(j + 2..j + 2 + l)?;
                        r.pxe.push((value[j], v.to_vec()));
                        j += 2 + l;
                    }
                }
                _ => {}
            }
            i += 2 + len;
        }
        Some(r)
    }

    /// Sends `request` to `to` until replies satisfy `done` (resending every second), or fails
    /// after ten tries with what came.
    fn exchange(
        sock: &UdpSocket,
        to: SocketAddrV4,
        request: &[u8],
        xid: u32,
        mut done: impl FnMut(&[Reply]) -> bool,
    ) -> Result<Vec<Reply>, String> {
        let mut replies = Vec::new();
        for _ in 0..10 {
            sock.send_to(request, to)
                .map_err(|e| format!("send to {to}: {e}"))?;
            let until = Instant::now() + Duration::from_secs(1);
            let mut buf = [0u8; 1500];
            while Instant::now() < until {
                match sock.recv_from(&mut buf) {
                    Ok((n, _)) => {
                        if let Some(r) = parse(&buf[..n], xid) {
                            replies.push(r);
                            if done(&replies) {
                                return Ok(replies);
                            }
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(format!("receive: {e}")),
                }
            }
        }
        Err(format!(
            "{} replies to {to}, not the ones expected",
            replies.len()
        ))
    }

    fn is_proxy_offer(r: &Reply) -> bool {
        r.kind == OFFER && r.yiaddr.is_unspecified() && r.vendor_class.starts_with(b"PXEClient")
    }

    /// Runs in namespace `ns` (on this thread).
    pub fn boot_server_discovery(ns: &str) -> Result<Found, String> {
        super::enter_namespace(ns)?;
        let sock = UdpSocket::bind("0.0.0.0:68").map_err(|e| format!("bind :68: {e}"))?;
        sock.set_broadcast(true).map_err(|e| e.to_string())?;
        // The client namespace has no route for 255.255.255.255; firmware sends on its NIC.
        let dev = b"eth0\0";
        // SAFETY: setsockopt(2) on our own socket with a NUL-terminated name and its length.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                dev.as_ptr().cast(),
                dev.len() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(format!(
                "SO_BINDTODEVICE eth0: {}",
                std::io::Error::last_os_error()
            ));
        }
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let xid = 0x6d61_7975;
        let offers = exchange(
            &sock,
            SocketAddrV4::new(Ipv4Addr::BROADCAST, 67),
            &packet(DISCOVER, xid, Ipv4Addr::UNSPECIFIED, &[]),
            xid,
            |rs| {
                rs.iter().any(is_proxy_offer)
                    && rs
                        .iter()
                        .any(|r| r.kind == OFFER && !r.yiaddr.is_unspecified())
            },
        )?;
        let address_from = offers
            .iter()
            .find(|r| r.kind == OFFER && !r.yiaddr.is_unspecified())
            .and_then(|r| r.server_id);
        let proxy = offers
            .iter()
            .find(|r| is_proxy_offer(r))
            .ok_or("no proxy offer")?;
        let server = proxy.server_id.ok_or("the proxy offer has no server id")?;
        // The boot menu (sub-option 9): type (2 bytes), text length, text; take the first item.
        let menu = proxy
            .pxe
            .iter()
            .find(|(code, _)| *code == 9)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("the proxy offer has no boot menu: {:?}", proxy.pxe))?;
        let item = menu.get(0..2).ok_or("an empty boot menu")?;
        let select = [43, 6, 71, 4, item[0], item[1], 0, 0];
        let xid = xid + 1;
        let client: Ipv4Addr = super::CLIENT_ADDR.parse().map_err(|_| "client address")?;
        let acks = exchange(
            &sock,
            SocketAddrV4::new(server, 4011),
            &packet(REQUEST, xid, client, &select),
            xid,
            |rs| rs.iter().any(|r| r.kind == ACK),
        )?;
        let ack = acks.iter().find(|r| r.kind == ACK).ok_or("no ACK")?;
        Ok(Found {
            address_from,
            boot_file: ack.file.clone(),
            next_server: ack.siaddr,
        })
    }
}
