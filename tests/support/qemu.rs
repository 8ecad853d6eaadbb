//! The QEMU lab the real-boot tests share: network namespaces with a bridge and taps, processes
//! started inside them and stopped by pid, QEMU guests with their serial console in a file,
//! mayu started headless with its API and event stream followed from inside the namespace, and
//! waits with timeouts that fail with every log's tail.
//!
//! A test runs its scenario through [`in_lab`]: without root, QEMU or the Debian packages
//! (`scripts/install-deps.sh`) it returns early with the reason, except under `CI=true`, where
//! it fails. `MAYU_BIN` names the mayu binary (else it is built); `MAYU_QEMU_ACCEL` = `kvm` |
//! `tcg`; `MAYU_TEST_KEEP=1` keeps the temp folder with logs and inventory.

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

/// The lab bridge's address: mayu's boot port and dnsmasq listen here.
pub const ADDR: &str = "10.77.0.1";
pub const BOOT_PORT: u16 = 4081;
/// The API as seen from inside the namespace.
pub const API: &str = "http://127.0.0.1:4080";
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// How long mayu may take to answer on its boot port and start dnsmasq.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long events may trail a machine that has powered off.
pub const EVENT_GRACE: Duration = Duration::from_secs(10);
/// Software emulation, whatever the host offers.
pub const TCG: [&str; 4] = ["-accel", "tcg", "-cpu", "max"];
/// Serial console lines of a lab machine that will not get any further.
pub const STUCK: [&str; 5] = [
    "No bootable device",
    "failed: Input/output error",
    "MAYU-INSTALLER-FAILED",
    "MAYU-SYSTEM-FAILED",
    "Kernel panic",
];
/// What every lab needs, as (tool, Debian package).
const TOOLS: [(&str, &str); 5] = [
    ("ip", "iproute2"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("dnsmasq", "dnsmasq-base"),
    ("busybox", "busybox-static"),
    ("git", "git"),
];

/// The repository (the console crate's tests include this file too: `ui/`'s parent).
pub fn repo() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if here.join("scripts").is_dir() {
        return here;
    }
    here.parent().map_or(here.clone(), Path::to_path_buf)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Why this machine cannot run a lab test, if it cannot: root, the shared tools, `tools` and
/// `files` (each with the Debian package that brings it).
fn missing_prerequisite(tools: &[(&str, &str)], files: &[(&str, &str)]) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, taps)".into());
    }
    for (tool, package) in TOOLS.iter().chain(tools) {
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
    for (file, package) in files {
        if !Path::new(file).is_file() {
            return Some(format!("{file} missing (Debian package {package})"));
        }
    }
    None
}

/// A lab that cannot be set up: the test fails under `CI=true`, else says why and passes.
fn not_runnable(test: &str, reason: &str) {
    if in_ci() {
        panic!("{test} cannot run in CI: {reason}");
    }
    eprintln!("{test}: not run: {reason}");
}

/// Runs `cmd` to its end; its stdout, or what went wrong with all it printed.
pub fn run(cmd: &mut Command) -> Result<String, String> {
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

pub fn ip(args: &[&str]) -> Result<String, String> {
    run(Command::new("ip").args(args))
}

/// The `mayu` binary lives in the `ui` crate, so `CARGO_BIN_EXE_mayu` is available only to the
/// console crate's tests: `MAYU_BIN` when set, else that, otherwise
/// `cargo build -p mayu-console --bin mayu` (with `etcd` when this test has it) and
/// `<target>/debug/mayu` next to the test's own executable.
fn mayu_binary() -> Result<PathBuf, String> {
    if let Ok(bin) = std::env::var("MAYU_BIN") {
        return Ok(PathBuf::from(bin));
    }
    if let Some(bin) = option_env!("CARGO_BIN_EXE_mayu") {
        return Ok(PathBuf::from(bin));
    }
    // With the features this test was built with: the binary is shared with the console
    // crate's tests (`<target>/debug/mayu`), and its cluster tests need `etcd`.
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "-q", "-p", "mayu-console", "--bin", "mayu"]);
    if cfg!(feature = "etcd") {
        build.args(["--features", "mayu-console/etcd"]);
    }
    run(build.current_dir(repo()))?;
    // <target>/debug/deps/TEST-HASH → <target>/debug/mayu
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

/// `MAYU_QEMU_ACCEL` = `kvm` | `tcg`; by default KVM only where the CPU has real hardware
/// virtualisation.
pub fn accel() -> Vec<&'static str> {
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
        Ok("tcg") => TCG.to_vec(),
        _ if kvm_works() => vec!["-accel", "kvm", "-cpu", "host"],
        _ => TCG.to_vec(),
    }
}

/// Moves the calling thread into the namespace, so its sockets (and those of a current-thread
/// runtime driven by it) live there.
pub fn enter_namespace(ns: &str) -> Result<(), String> {
    let f = fs::File::open(format!("/run/netns/{ns}")).map_err(|e| format!("open netns: {e}"))?;
    // SAFETY: setns(2) with a valid namespace fd; it affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!("setns: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The last `lines` lines of a (log) file, empty if it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
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

pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// mayu's config in a lab, up to its profiles: the bridge with full DHCP and router
/// advertisements, the fixed ports, its folders inside the lab folder (relative to the config),
/// the repository's templates and images, the git audit, automatic assignment.
pub fn config_head() -> String {
    let repo = repo();
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
"#,
        templates = repo.join("templates").display(),
        images = repo.join("images").display(),
    )
}

/// [`config_head`] with profile `install` (the lab installer writes the machine's disk, which
/// it boots from then on) and power control over IPMI with the credentials in `secrets` (no
/// poller: the tests ask).
pub fn install_config(secrets: &Path) -> String {
    config_head()
        + &format!(
            r#"profiles:
  - name: install
    image: installer
    kernel_args: "console=ttyS0 panic=1"
    boot_from_disk: true
    templates: {{ ipxe: discovery.ipxe, metadata: install.env }}
    env: {{ install_disk: /dev/vda }}
power:
  secrets: {}
  timeout: 10s
  poll: 0s
"#,
            secrets.display()
        )
}

/// Everything a lab test made: its namespaces, its temp folder, the processes it started.
/// Dropping it stops those processes (by pid: TERM, then KILL; the last started first), kills
/// anything still inside its namespaces, and removes them and the temp folder.
pub struct Lab {
    /// The test's name, for what it prints.
    test: &'static str,
    /// The server namespace: the lab bridge, the machines' taps, mayu.
    pub ns: String,
    namespaces: Vec<String>,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    children: Mutex<Vec<(String, Child)>>,
}

impl Lab {
    /// The server namespace `ns` with the bridge `br0` at [`ADDR`]/24 (and a ULA for dnsmasq's
    /// router advertisements: iPXE otherwise waits ~13 s for IPv6), one tap per name in `taps`
    /// on it, and a temp folder dnsmasq (as `nobody`) can traverse.
    pub fn create(test: &'static str, ns: String, taps: &[&str]) -> Result<Lab, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", test.replace('_', "-")))
            .tempdir()
            .map_err(|e| e.to_string())?;
        let path = dir.path().to_path_buf();
        // dnsmasq drops to `nobody`: the TFTP root and the folders above it must be traversable.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        let mut lab = Lab {
            test,
            ns: ns.clone(),
            namespaces: Vec::new(),
            dir: Some(dir),
            path,
            children: Mutex::new(Vec::new()),
        };
        ip(&["netns", "add", &ns])?;
        lab.namespaces.push(ns.clone());
        let ns = ns.as_str();
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", ns, "addr", "add", &format!("{ADDR}/24"), "dev", "br0"])?;
        ip(&["-n", ns, "addr", "add", "fd77:77::1/64", "dev", "br0"])?;
        ip(&["-n", ns, "link", "set", "br0", "up"])?;
        for tap in taps {
            ip(&["-n", ns, "tuntap", "add", "dev", tap, "mode", "tap"])?;
            ip(&["-n", ns, "link", "set", tap, "master", "br0"])?;
            ip(&["-n", ns, "link", "set", tap, "up"])?;
        }
        Ok(lab)
    }

    /// The name of the lab's namespace for `role` (made by [`Lab::add_namespace`]).
    pub fn namespace(&self, role: &str) -> String {
        format!("{}-{role}", self.ns)
    }

    /// Adds the namespace for `role`, removed with the lab; returns its name.
    pub fn add_namespace(&mut self, role: &str) -> Result<String, String> {
        let ns = self.namespace(role);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        Ok(ns)
    }

    /// One more address on the lab bridge (`addr`/24), e.g. a BMC's.
    pub fn address(&self, addr: &str) -> Result<(), String> {
        ip(&[
            "-n",
            &self.ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "br0",
        ])
        .map(|_| ())
    }

    /// A veth from the bridge (`bridge_end`) to `eth0` in namespace `ns`, with `addr`.
    pub fn veth(
        &self,
        bridge_end: &str,
        ns: &str,
        addr: &str,
        mac: Option<&str>,
    ) -> Result<(), String> {
        let s = self.ns.as_str();
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

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Starts `cmd` in the server namespace, its output in `{name}.log`.
    pub fn spawn(&self, name: &str, cmd: &[&str]) -> Result<(), String> {
        self.spawn_in(&self.ns, name, cmd)
    }

    /// Starts `cmd` inside namespace `ns`, its output in `{name}.log`; `ip netns exec` execs
    /// it, so the pid is its own.
    pub fn spawn_in(&self, ns: &str, name: &str, cmd: &[&str]) -> Result<(), String> {
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
    pub fn exited(&self, name: &str) -> Option<String> {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let (_, child) = children.iter_mut().find(|(n, _)| n == name)?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// Stops one named process (a machine that has shown what it had to).
    pub fn stop(&self, name: &str) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, child)) = children.iter_mut().find(|(n, _)| n == name) {
            stop(child);
        }
    }

    /// The tail of every log in the lab folder (mayu's first), for a failure message.
    pub fn diagnostics(&self) -> String {
        let mut logs: Vec<String> = fs::read_dir(&self.path)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.ends_with(".log"))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort_by_key(|name| (name != "mayu.log", name.clone()));
        let mut s = String::new();
        for name in logs {
            let _ = writeln!(s, "--- {name} (tail) ---\n{}", tail(&self.file(&name), 40));
        }
        s
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
        for ns in &self.namespaces {
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
                eprintln!("{}: cleanup: {e}", self.test);
            }
        }
        if std::env::var("MAYU_TEST_KEEP").is_ok_and(|v| v == "1") {
            if let Some(dir) = self.dir.take() {
                eprintln!("{}: kept {}", self.test, dir.keep().display());
            }
        }
    }
}

/// What a lab test needs before it can run.
pub struct Needs<'a> {
    /// The test's name, for what it prints.
    pub test: &'static str,
    /// (tool, Debian package) beyond the ones every lab needs.
    pub tools: &'a [(&'a str, &'a str)],
    /// (file, Debian package).
    pub files: &'a [(&'a str, &'a str)],
    /// Scripts in `scripts/` that build the images the test boots (fast when up to date).
    pub images: &'a [&'a str],
}

/// A scenario run inside a lab's server namespace, given the lab and the mayu binary.
pub type Scenario = for<'a> fn(&'a Lab, &'a Path) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Checks `needs`, builds the images and mayu, sets up a lab with `create`, runs `scenario` on
/// one thread inside its server namespace (a current-thread runtime, so everything it starts
/// lives there too), then cleans up whatever happened.
pub fn in_lab(needs: &Needs, create: impl FnOnce() -> Result<Lab, String>, scenario: Scenario) {
    if let Some(reason) = missing_prerequisite(needs.tools, needs.files) {
        return not_runnable(needs.test, &reason);
    }
    for script in needs.images {
        if let Err(e) = run(&mut Command::new(repo().join("scripts").join(script))) {
            return not_runnable(needs.test, &format!("cannot build the images: {e}"));
        }
    }
    let mayu = match mayu_binary() {
        Ok(m) => m,
        Err(e) => panic!("cannot build mayu: {e}"),
    };
    let lab = match create() {
        Ok(lab) => lab,
        Err(e) => return not_runnable(needs.test, &format!("cannot create the lab network: {e}")),
    };
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

/// Polls `check` until it yields a value; `Err` on timeout or when mayu has exited, with the
/// lab's diagnostics.
pub async fn try_wait_for<T>(
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
                lab.diagnostics()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "timed out waiting for {what}\n{}",
                lab.diagnostics()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// [`try_wait_for`], failing the test on timeout.
pub async fn wait_for<T>(
    lab: &Lab,
    what: &str,
    timeout: Duration,
    check: impl AsyncFnMut() -> Option<T>,
) -> T {
    try_wait_for(lab, what, timeout, check)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The API as seen from inside the server namespace, plus the events collected from its stream.
pub struct Api {
    pub http: reqwest::Client,
    token: String,
    events: Arc<Mutex<Vec<Value>>>,
}

/// Writes `config` to the lab's `config.yaml`, starts mayu headless in the server namespace
/// and [`connect`]s.
pub async fn start_mayu(lab: &Lab, mayu: &Path, config: &str) -> Api {
    let path = write_config(lab, config);
    let cfg = path.to_string_lossy().into_owned();
    let bin = mayu.to_string_lossy().into_owned();
    lab.spawn("mayu", &[&bin, "--headless", "--config", &cfg])
        .expect("start mayu");
    connect(lab).await
}

/// Writes `config` as the lab's `config.yaml`; its path.
pub fn write_config(lab: &Lab, config: &str) -> PathBuf {
    let path = lab.file("config.yaml");
    fs::write(&path, config).expect("write config");
    path
}

/// The API of a mayu started on the lab's config (by [`start_mayu`], or a console the test
/// runs): waits for its boot port and admin token, follows its events and waits until dnsmasq
/// runs (it answers only then).
pub async fn connect(lab: &Lab) -> Api {
    let http = reqwest::Client::builder()
        .no_proxy()
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
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            let token = fs::read_to_string(&token_file).ok()?;
            boot.then(|| token.trim().to_string())
        },
    )
    .await;
    let api = Api {
        http,
        token,
        events: Arc::new(Mutex::new(Vec::new())),
    };
    api.follow_events();
    api.event(lab, "dnsmasq running", START_TIMEOUT, |e| {
        str_of(e, "type") == "service"
            && str_of(e, "name") == "dnsmasq"
            && str_of(e, "status") == "running"
    })
    .await;
    api
}

impl Api {
    pub async fn get(&self, path: &str) -> Result<Value, String> {
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

    /// [`Api::get`], failing the test on an error.
    pub async fn must_get(&self, path: &str) -> Value {
        self.get(path).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every event collected so far, oldest first.
    pub fn events(&self) -> Vec<Value> {
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
                // Reconnect pacing only; what the tests wait for is matched on events.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    /// The first collected event that satisfies `pred`, waiting for it up to `timeout`.
    pub async fn event(
        &self,
        lab: &Lab,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        try_wait_for(lab, what, timeout, async || {
            self.events().into_iter().find(|e| pred(e))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\nevents:\n{}", self.summaries()))
    }

    /// The number of the first collected event after `after` about machine `g` that `pred`
    /// accepts, waiting for it up to `timeout`.
    pub async fn machine_event(
        &self,
        lab: &Lab,
        g: &Guest,
        what: &str,
        after: u64,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> u64 {
        let ev = self
            .event(lab, what, timeout, |e| {
                e["seq"].as_u64().is_some_and(|s| s > after) && g.about(e) && pred(e)
            })
            .await;
        ev["seq"].as_u64().unwrap_or(after)
    }

    /// Waits (up to `timeout` for each) until machine `g` has, after event `after`, installed
    /// itself to disk and then reported boot-complete from it; the number of that report.
    pub async fn installed(&self, lab: &Lab, g: &Guest, after: u64, timeout: Duration) -> u64 {
        let installed = self
            .machine_event(lab, g, "installed to disk", after, timeout, |e| {
                str_of(e, "change").contains("installed to disk")
            })
            .await;
        self.machine_event(lab, g, "boot complete from disk", installed, timeout, |e| {
            str_of(e, "type") == "boot_step" && str_of(e, "phase") == "boot_complete"
        })
        .await
    }

    /// One line per collected event: its number and summary.
    pub fn summaries(&self) -> String {
        summaries(self.events().iter())
    }
}

fn summaries<'a>(events: impl Iterator<Item = &'a Value>) -> String {
    events
        .map(|e| format!("  {} {}", e["seq"], str_of(e, "summary")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A lab machine: QEMU process `name`, SMBIOS `serial` (its id, lowercased), one NIC with
/// `mac` on tap `tap`.
#[derive(Clone, Copy)]
pub struct Guest {
    pub name: &'static str,
    pub serial: &'static str,
    pub mac: &'static str,
    pub tap: &'static str,
}

impl Guest {
    pub fn id(&self) -> String {
        self.serial.to_lowercase()
    }

    pub fn serial_log(&self, lab: &Lab) -> PathBuf {
        lab.file(&format!("{}.serial.log", self.name))
    }

    /// The event is about this machine (by id, or by MAC for DHCP).
    pub fn about(&self, ev: &Value) -> bool {
        let id = self.id();
        str_of(ev, "id") == id
            || ev.pointer("/machine/id").and_then(Value::as_str) == Some(id.as_str())
            || (str_of(ev, "type") == "dhcp" && str_of(ev, "mac").eq_ignore_ascii_case(self.mac))
    }

    /// The summaries of the events about this machine.
    pub fn summaries(&self, events: &[Value]) -> String {
        summaries(events.iter().filter(|e| self.about(e)))
    }

    /// The QEMU command line every lab machine shares: `accel`, one vCPU with `mib` MiB, no
    /// display, the serial console in `{name}.serial.log`, SMBIOS `product` and serial, and
    /// virtio-net on its tap as the first boot device (`nic` adds options to that NIC).
    pub fn qemu(
        &self,
        lab: &Lab,
        accel: &[&str],
        mib: u64,
        product: &str,
        nic: &str,
    ) -> Vec<String> {
        let mut args: Vec<String> = vec!["qemu-system-x86_64".into()];
        args.extend(accel.iter().map(|a| a.to_string()));
        args.extend(
            [
                "-name",
                self.name,
                "-m",
                &mib.to_string(),
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
                &format!("file:{}", self.serial_log(lab).display()),
                "-smbios",
                &format!(
                    "type=1,manufacturer=mayu-test,product={product},serial={}",
                    self.serial
                ),
                "-netdev",
                &format!("tap,id=n0,ifname={},script=no,downscript=no", self.tap),
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac={},bootindex=1{nic}", self.mac),
            ]
            .map(String::from),
        );
        args
    }

    /// SeaBIOS: network first and nothing else, its output on the serial console.
    pub fn seabios(&self, lab: &Lab) -> Result<Vec<String>, String> {
        // SeaBIOS prints to the serial port only when told where it is (0x3f8, little-endian).
        let sercon = lab.file("sercon");
        fs::write(&sercon, [0xf8u8, 0x03]).map_err(|e| e.to_string())?;
        Ok(vec![
            "-boot".into(),
            "order=n,strict=on".into(),
            "-fw_cfg".into(),
            format!("name=etc/sercon-port,file={}", sercon.display()),
        ])
    }

    /// A machine for the lab installer: [`Guest::qemu`] (without the program name) under
    /// SeaBIOS, network first and behind it a blank `disk_mib` MiB disk (`{name}.disk.raw`) in
    /// SeaBIOS's drive table (BIOS drive 0x80, which iPXE's `sanboot` needs). No `-no-reboot`:
    /// the installer reboots, and the firmware network-boots again.
    pub fn installable(
        &self,
        lab: &Lab,
        accel: &[&str],
        mib: u64,
        product: &str,
        disk_mib: u64,
    ) -> Result<Vec<String>, String> {
        let disk = lab.file(&format!("{}.disk.raw", self.name));
        let f = fs::File::create(&disk).map_err(|e| format!("create {}: {e}", disk.display()))?;
        f.set_len(disk_mib << 20).map_err(|e| e.to_string())?;
        let mut args = self.qemu(lab, accel, mib, product, "");
        args.remove(0);
        args.extend([
            "-drive".into(),
            format!("file={},format=raw,if=none,id=d0", disk.display()),
            "-device".into(),
            "virtio-blk-pci,drive=d0,bootindex=2".into(),
        ]);
        args.extend(self.seabios(lab)?);
        Ok(args)
    }

    /// OVMF with a fresh copy of its variable store (OVMF prints to serial by itself).
    pub fn ovmf(&self, lab: &Lab) -> Result<Vec<String>, String> {
        let vars = lab.file(&format!("{}.vars.fd", self.name));
        fs::copy(OVMF_VARS, &vars).map_err(|e| format!("copy {OVMF_VARS}: {e}"))?;
        Ok(vec![
            "-drive".into(),
            format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"),
            "-drive".into(),
            format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        ])
    }

    /// Starts QEMU with `args` in the server namespace, its own output in `{name}.log`.
    pub fn start(&self, lab: &Lab, args: &[String]) -> Result<(), String> {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.spawn(self.name, &refs)
    }
}

/// One step of a machine's expected journey, matched against its events in order.
pub struct Step {
    what: String,
    matches: Box<dyn Fn(&Value) -> bool>,
}

pub fn step(what: impl Into<String>, matches: impl Fn(&Value) -> bool + 'static) -> Step {
    Step {
        what: what.into(),
        matches: Box::new(matches),
    }
}

/// A boot step event of `phase` whose detail mentions `about` (a profile or an image file).
pub fn boot_step(phase: &'static str, about: impl Into<String>) -> Step {
    let about = about.into();
    step(format!("boot_step {phase} ({about})"), move |e| {
        str_of(e, "type") == "boot_step"
            && str_of(e, "phase") == phase
            && str_of(e, "detail").contains(about.as_str())
    })
}

/// `Err` names the first of `steps` that `g`'s events (in order) have not reached.
pub fn follow(events: &[Value], g: &Guest, steps: &[Step]) -> Result<(), String> {
    let mut it = events.iter().filter(|e| g.about(e));
    for s in steps {
        if !it.any(|e| (s.matches)(e)) {
            return Err(s.what.clone());
        }
    }
    Ok(())
}

/// How [`journey`] waits.
pub struct Journey<'a> {
    /// Only events numbered above this count.
    pub after: u64,
    /// The journey ends only once the machine has also powered itself off.
    pub until_off: bool,
    /// Serial console lines of a machine that will not get any further.
    pub stuck: &'a [&'a str],
    pub timeout: Duration,
}

/// Waits until `g`'s events (after `j.after`) follow `steps`. Once the machine has powered off
/// (or died), its events are all in or never will be: the stream gets [`EVENT_GRACE`] to
/// deliver the last ones. Fails with the machine's events and the lab's logs; returns the
/// events after `j.after`.
pub async fn journey(
    lab: &Lab,
    api: &Api,
    g: &Guest,
    steps: &[Step],
    j: &Journey<'_>,
) -> Vec<Value> {
    let since = |events: Vec<Value>| -> Vec<Value> {
        events
            .into_iter()
            .filter(|e| e["seq"].as_u64().is_some_and(|s| s > j.after))
            .collect()
    };
    let mut gone: Option<(Instant, String)> = None;
    let serial_log = g.serial_log(lab);
    let outcome = try_wait_for(
        lab,
        &format!("{} ({}) to finish", g.name, g.id()),
        j.timeout,
        async || {
            // A machine that is stuck says so on its console; no need to wait for the timeout.
            let console = fs::read_to_string(&serial_log).unwrap_or_default();
            if let Some(stuck) = j.stuck.iter().find(|s| console.contains(**s)) {
                return Some(Err(format!("{}: `{stuck}` on the serial console", g.name)));
            }
            let reached = follow(&since(api.events()), g, steps);
            if gone.is_none() {
                gone = lab.exited(g.name).map(|status| (Instant::now(), status));
            }
            match (reached, &gone) {
                (Ok(()), Some(_)) => Some(Ok(())),
                (Ok(()), None) if !j.until_off => Some(Ok(())),
                (Err(missing), Some((at, status))) if at.elapsed() > EVENT_GRACE => Some(Err(
                    format!("qemu {} exited ({status}) before `{missing}`", g.name),
                )),
                _ => None,
            }
        },
    )
    .await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!(
            "{e}\nevents for {}:\n{}\n{}",
            g.id(),
            g.summaries(&api.events()),
            lab.diagnostics()
        ),
        // The lab's logs are in the message already.
        Err(e) => panic!(
            "{e}\nevents for {}:\n{}",
            g.id(),
            g.summaries(&api.events())
        ),
    }
    since(api.events())
}

/// `git log ARGS` of machine `id`'s file in the lab's inventory repository.
pub fn git_log(lab: &Lab, id: &str, args: &[&str]) -> String {
    run(Command::new("git")
        .args(["-C"])
        .arg(lab.file("inventory"))
        .arg("log")
        .args(args)
        .args(["--", &format!("{id}.json")]))
    .unwrap_or_else(|e| panic!("{e}"))
}
