//! The dnsmasq supervisor against the real dnsmasq, in network namespaces each test creates:
//! a veth pair with the server end (10.77.0.1/24) in one namespace and the client end in
//! another, where busybox `udhcpc` and tftp-hpa's `tftp` play the machine. Nothing leaves the
//! namespaces. Needs root, `dnsmasq-base`, `ipxe`, `busybox-static`, `iproute2`, `tftp-hpa`.
//!
//! Without root (or without `ip netns`) these tests return early, printing why; with
//! `CI=true` they fail instead.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mayu::config::Config;
use mayu::dnsmasq::{self, Options, SelfTestError, Supervisor, SERVICE};
use mayu::events::{Event, EventKind};
use mayu::machine::{new_token, Mac, Machine, MachineId};
use mayu::Engine;
use time::OffsetDateTime;
use tokio::process::Command;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CLIENT_MAC: &str = "52:54:00:77:00:02";
const WAIT: Duration = Duration::from_secs(30);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Refuses to run (fails in CI, returns None elsewhere) with `why`.
fn cannot(why: &str) -> Option<Lab> {
    if in_ci() {
        panic!("dnsmasq namespace test cannot run in CI: {why}");
    }
    eprintln!("skipping dnsmasq namespace test: {why}");
    None
}

fn run(argv: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| format!("{}: {e}", argv.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two namespaces joined by a veth pair and a world-traversable temp folder; `Drop` kills
/// whatever still runs inside the namespaces (by pid) and deletes them.
struct Lab {
    server: String,
    client: String,
    dir: tempfile::TempDir,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// `veth`: create the link now (false: the test adds it later with [`Lab::add_link`]).
    fn new(veth: bool) -> Option<Lab> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return cannot("not root (network namespaces and port 67 need root)");
        }
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}-{n}", std::process::id());
        let server = format!("mayu-t-{tag}-s");
        let client = format!("mayu-t-{tag}-c");
        if let Err(e) = run(&["ip", "netns", "add", &server]) {
            return cannot(&format!("cannot create a network namespace: {e}"));
        }
        let dir = tempfile::Builder::new()
            .prefix("mayu-dnsmasq-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let lab = Lab {
            server,
            client,
            dir,
        };
        run(&["ip", "netns", "add", &lab.client]).expect("client namespace");
        // dnsmasq may drop to `nobody`: every folder down to the TFTP root must be traversable.
        std::fs::set_permissions(lab.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        if veth {
            lab.add_link();
        }
        Some(lab)
    }

    fn add_link(&self) {
        let (s, c) = (self.server.as_str(), self.client.as_str());
        for argv in [
            vec![
                "ip", "link", "add", "mt0", "netns", s, "type", "veth", "peer", "name", "eth0",
                "netns", c,
            ],
            vec!["ip", "-n", s, "addr", "add", "10.77.0.1/24", "dev", "mt0"],
            vec!["ip", "-n", c, "link", "set", "eth0", "address", CLIENT_MAC],
            // outside the DHCP range: the TFTP client needs an address of its own.
            vec!["ip", "-n", c, "addr", "add", "10.77.0.2/24", "dev", "eth0"],
            vec!["ip", "-n", s, "link", "set", "mt0", "up"],
            vec!["ip", "-n", c, "link", "set", "eth0", "up"],
        ] {
            run(&argv).expect("veth setup");
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A full-mode config for this lab; `dhcp_extra` is added to the `dhcp:` block and
    /// `top_extra` at the top level.
    fn config(&self, dhcp_extra: &str, top_extra: &str) -> Config {
        self.config_with_dhcp(
            &format!(
                "    mode: full
    range: [10.77.0.100, 10.77.0.200]
    lease_time: 1h
    router: 10.77.0.1
{dhcp_extra}"
            ),
            top_extra,
        )
    }

    /// A config for this lab with `dhcp` as the body of its `dhcp:` block.
    fn config_with_dhcp(&self, dhcp: &str, top_extra: &str) -> Config {
        let tftp = self.path().join("tftp");
        std::fs::create_dir_all(&tftp).expect("tftproot");
        std::fs::set_permissions(&tftp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let kpxe = tftp.join("undionly.kpxe");
        if !kpxe.exists() {
            std::fs::copy("/usr/lib/ipxe/undionly.kpxe", &kpxe)
                .expect("/usr/lib/ipxe/undionly.kpxe (Debian package `ipxe`)");
            std::fs::set_permissions(&kpxe, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let text = format!(
            "network:
  interface: mt0
  address: 10.77.0.1
  dhcp:
{dhcp}
http: {{ boot: 0.0.0.0:4081, api: 127.0.0.1:0 }}
inventory: inventory
runtime: run
tftproot: tftp
templates: {}
audit: {{ git: false }}
assignment: manual
{top_extra}
",
            templates.display()
        );
        let file = self.path().join("config.yaml");
        std::fs::write(&file, &text).expect("config.yaml");
        Config::load(&file).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn wrapper(&self) -> Vec<OsString> {
        ["ip", "netns", "exec", &self.server]
            .into_iter()
            .map(OsString::from)
            .collect()
    }

    /// Runs a command in the client namespace; its output (stdout + stderr) and success.
    async fn client(&self, argv: &[&str]) -> (bool, String) {
        let out = tokio::time::timeout(
            WAIT,
            Command::new("ip")
                .args(["netns", "exec", &self.client])
                .args(argv)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{argv:?} did not finish"))
        .expect("run client command");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// busybox udhcpc, once, with extra options; `-s /bin/true` leaves the interface alone.
    async fn udhcpc(&self, extra: &[&str]) -> (bool, String) {
        self.udhcpc_script("/bin/true", extra).await
    }

    /// busybox udhcpc, once, running `script` on its events, with extra options.
    async fn udhcpc_script(&self, script: &str, extra: &[&str]) -> (bool, String) {
        let mut argv = vec![
            "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "6", "-T", "1", "-s", script,
        ];
        argv.extend_from_slice(extra);
        self.client(&argv).await
    }

    /// `file` over TFTP from the lab server into `to`, from the client namespace.
    async fn tftp_get(&self, file: &str, to: &Path) -> (bool, String) {
        let to = to.to_str().expect("utf-8");
        self.client(&["tftp", "-m", "binary", "10.77.0.1", "-c", "get", file, to])
            .await
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            // Only processes inside our own namespaces, by pid.
            if let Ok(out) = std::process::Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: kill(2) on a pid that lives in a namespace this test made.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

/// The supervisor running in a task, with what the test watches.
struct Running {
    engine: Engine,
    events: broadcast::Receiver<Arc<Event>>,
    pid: watch::Receiver<Option<u32>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

fn start(lab: &Lab, config: Config, tune: impl FnOnce(&mut Options)) -> Running {
    let engine = Engine::open(config).expect("engine");
    let events = engine.bus().subscribe();
    let mut opts = Options {
        wrapper: lab.wrapper(),
        backoff_initial: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
        ..Options::default()
    };
    tune(&mut opts);
    let sup = Supervisor::new(engine.clone(), opts);
    let pid = sup.pid();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sup.run(cancel.clone()));
    Running {
        engine,
        events,
        pid,
        cancel,
        task,
    }
}

impl Running {
    /// The next event that satisfies `pred`, or a failure listing what did come.
    /// The next TFTP event that `pred` (given its success and file) picks.
    async fn tftp_event(&mut self, what: &str, pred: impl Fn(bool, &str) -> bool) -> TftpSeen {
        let ev = self
            .wait_for(
                what,
                |k| matches!(k, EventKind::Tftp { ok, file, .. } if pred(*ok, file)),
            )
            .await;
        let EventKind::Tftp {
            file,
            client,
            detail,
            ..
        } = &ev.kind
        else {
            unreachable!()
        };
        TftpSeen {
            file: file.clone(),
            client: client.clone(),
            detail: detail.clone(),
            summary: ev.summary(),
        }
    }

    async fn wait_for(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&EventKind) -> bool,
    ) -> Arc<Event> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(ev)) if pred(&ev.kind) => return ev,
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => panic!("bus closed"),
                Err(_) => {
                    let seen: Vec<String> = self
                        .engine
                        .bus()
                        .recent(40)
                        .iter()
                        .map(|e| e.summary())
                        .collect();
                    panic!(
                        "timed out waiting for {what}; recent events:\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
    }

    /// Waits until `cond` holds, checking now and after each event (state such as the lease
    /// table may change before the event the test would otherwise wait for).
    async fn wait_until(&mut self, what: &str, mut cond: impl FnMut(&Engine) -> bool) {
        if cond(&self.engine) {
            return;
        }
        let engine = self.engine.clone();
        self.wait_for(what, |_| cond(&engine)).await;
    }

    async fn running(&mut self) -> u32 {
        self.wait_for("dnsmasq running", |k| {
            matches!(k, EventKind::Service { name, status, .. } if name == SERVICE && *status == mayu::lease::ServiceStatus::Running)
        })
        .await;
        self.pid.borrow().expect("a running child has a pid")
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("supervisor stops after cancel")
            .expect("supervisor task");
        let last = self
            .engine
            .services()
            .into_iter()
            .find(|s| s.name == SERVICE)
            .expect("dnsmasq service state");
        assert_eq!(last.status, mayu::lease::ServiceStatus::Stopped);
    }
}

/// What a TFTP event said.
struct TftpSeen {
    file: String,
    client: String,
    detail: String,
    summary: String,
}

fn dhcp_of(k: &EventKind, message: &str) -> bool {
    let mac: Mac = CLIENT_MAC.parse().expect("mac");
    matches!(k, EventKind::Dhcp { message: m, mac: Some(x), .. } if m == message && *x == mac)
}

#[tokio::test]
async fn a_real_client_gets_a_lease_and_the_boot_program_for_its_arch() {
    let Some(lab) = Lab::new(true) else { return };
    let mut r = start(&lab, lab.config("", ""), |_| {});
    let pid = r.running().await;
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    // A plain client (no option 93) is treated as BIOS PXE.
    let (ok, out) = lab.udhcpc(&["-x", "hostname:node1"]).await;
    assert!(ok, "udhcpc failed:\n{out}");
    let ack = r.wait_for("DHCPACK", |k| dhcp_of(k, "DHCPACK")).await;
    let EventKind::Dhcp {
        ip,
        hostname,
        detail,
        ..
    } = &ack.kind
    else {
        unreachable!()
    };
    let ip = ip.clone().expect("an ACK carries the address");
    assert!(
        out.contains(&format!("lease of {ip}")),
        "udhcpc says:\n{out}"
    );
    assert_eq!(hostname.as_deref(), Some("node1"));
    assert!(detail.contains("boot undionly.kpxe"), "{detail}");

    // The lease file reaches the engine's lease table, as an unknown machine.
    r.wait_until("the lease in the table", |e| {
        e.leases().iter().any(|l| l.mac.to_string() == CLIENT_MAC)
    })
    .await;
    let leases = r.engine.leases();
    let lease = leases
        .iter()
        .find(|l| l.mac.to_string() == CLIENT_MAC)
        .unwrap_or_else(|| panic!("no lease for {CLIENT_MAC}: {leases:?}"));
    assert_eq!(lease.ip.to_string(), ip);
    assert_eq!(lease.hostname.as_deref(), Some("node1"));
    assert!(lease.expires.is_some());
    assert_eq!(lease.machine, None);

    // UEFI x86-64 firmware (option 93 = 7) gets ipxe.efi.
    let (ok, out) = lab.udhcpc(&["-x", "0x5d:0007"]).await;
    assert!(ok, "udhcpc failed:\n{out}");
    let ack = r
        .wait_for("DHCPACK for UEFI", |k| dhcp_of(k, "DHCPACK"))
        .await;
    let EventKind::Dhcp { detail, .. } = &ack.kind else {
        unreachable!()
    };
    assert!(detail.contains("boot ipxe.efi"), "{detail}");
    assert!(detail.contains("efi64"), "{detail}");

    // iPXE itself (user class `iPXE`) gets the HTTP script, never iPXE again.
    let (ok, out) = lab.udhcpc(&["-x", "0x4d:69505845"]).await;
    assert!(ok, "udhcpc failed:\n{out}");
    let ack = r
        .wait_for("DHCPACK for iPXE", |k| dhcp_of(k, "DHCPACK"))
        .await;
    let EventKind::Dhcp { detail, .. } = &ack.kind else {
        unreachable!()
    };
    assert!(
        detail.contains("boot http://10.77.0.1:4081/boot.ipxe"),
        "{detail}"
    );

    r.stop().await;
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "dnsmasq {pid} still runs after stop"
    );
}

#[tokio::test]
async fn tftp_serves_undionly_and_reports_each_transfer() {
    let Some(lab) = Lab::new(true) else { return };
    let mut r = start(&lab, lab.config("", ""), |_| {});
    r.running().await;
    let got = lab.path().join("got.kpxe");
    let (ok, out) = lab.tftp_get("undionly.kpxe", &got).await;
    assert!(ok, "tftp failed:\n{out}");
    let sent = r.tftp_event("TFTP sent", |ok, _| ok).await;
    assert_eq!(sent.file, "undionly.kpxe");
    assert_eq!(sent.client, "10.77.0.2");
    let fetched = std::fs::read(&got).expect("fetched file");
    let original = std::fs::read("/usr/lib/ipxe/undionly.kpxe").expect("ipxe package");
    assert!(
        fetched == original,
        "fetched {} bytes that differ from the {} bytes served",
        fetched.len(),
        original.len()
    );

    let nothere = lab.path().join("nothere");
    let _ = lab.tftp_get("nothere.efi", &nothere).await;
    let failed = r.tftp_event("TFTP failure", |ok, _| !ok).await;
    assert_eq!(failed.file, "nothere.efi");
    assert_eq!(failed.detail, "file not found");
    assert!(
        failed
            .summary
            .ends_with("nothere.efi to 10.77.0.2: file not found"),
        "{}",
        failed.summary
    );

    // dnsmasq serves only world-readable files; the refusal carries its reason to the event.
    let private = lab.path().join("tftp").join("private.efi");
    std::fs::write(&private, b"not for TFTP").expect("private file");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let got = lab.path().join("got-private");
    let (ok, out) = lab.tftp_get("private.efi", &got).await;
    assert!(
        out.contains("Permission denied"),
        "tftp ({ok}) says:\n{out}"
    );
    let refused = r
        .tftp_event("TFTP refusal", |ok, file| !ok && file == "private.efi")
        .await;
    assert_eq!(refused.detail, "Permission denied");
    assert!(
        refused.summary.ends_with("private.efi: Permission denied"),
        "{}",
        refused.summary
    );
    r.stop().await;
}

#[tokio::test]
async fn a_killed_child_comes_back_and_the_restart_is_counted() {
    let Some(lab) = Lab::new(true) else { return };
    let mut r = start(&lab, lab.config("", ""), |_| {});
    let first = r.running().await;
    // SAFETY: kill(2) on the supervisor's child, which lives in our namespace.
    assert_eq!(unsafe { libc::kill(first as i32, libc::SIGKILL) }, 0);
    r.wait_for("restarting, restarts 1", |k| {
        matches!(k, EventKind::Service { name, status, restarts: 1, detail, .. }
            if name == SERVICE && *status == mayu::lease::ServiceStatus::Restarting && detail.contains("signal 9"))
    })
    .await;
    r.wait_for("running again, restarts 1", |k| {
        matches!(k, EventKind::Service { name, status, restarts: 1, .. }
            if name == SERVICE && *status == mayu::lease::ServiceStatus::Running)
    })
    .await;
    let second = r.pid.borrow().expect("pid");
    assert_ne!(first, second);
    // And it serves again.
    let (ok, out) = lab.udhcpc(&[]).await;
    assert!(ok, "udhcpc after restart:\n{out}");
    r.wait_for("DHCPACK after restart", |k| dhcp_of(k, "DHCPACK"))
        .await;
    r.stop().await;
}

#[tokio::test]
async fn an_inventory_change_is_served_after_sighup_without_a_restart() {
    let Some(lab) = Lab::new(true) else { return };
    // Only known machines are answered (Mayu #123).
    let mut r = start(&lab, lab.config("    known_only: true", ""), |_| {});
    let pid = r.running().await;

    let (ok, out) = lab.udhcpc(&["-t", "2"]).await;
    assert!(!ok, "an unknown machine got an answer:\n{out}");
    r.wait_for("DHCPDISCOVER ignored", |k| {
        dhcp_of(k, "DHCPDISCOVER")
            && matches!(k, EventKind::Dhcp { detail, .. } if detail.contains("ignored"))
    })
    .await;

    let id: MachineId = "node-7".parse().expect("id");
    let mut m = Machine::new(id.clone(), new_token(), OffsetDateTime::now_utc());
    m.macs = vec![CLIENT_MAC.parse().expect("mac")];
    m.ip = Some("10.77.0.150".parse().expect("ip"));
    m.hostname = Some("fixed1".into());
    r.engine.import(m, "test", "imported").expect("import");
    r.wait_for("hostsfile re-read", |k| {
        matches!(k, EventKind::Service { name, status, detail, .. }
            if name == SERVICE && *status == mayu::lease::ServiceStatus::Running && detail.contains("hostsfile re-read: 1 machines"))
    })
    .await;
    assert_eq!(*r.pid.borrow(), Some(pid), "dnsmasq was restarted");

    let (ok, out) = lab.udhcpc(&[]).await;
    assert!(ok, "the known machine got no lease:\n{out}");
    assert!(out.contains("lease of 10.77.0.150"), "{out}");
    let ack = r
        .wait_for("DHCPACK with the static address", |k| dhcp_of(k, "DHCPACK"))
        .await;
    let EventKind::Dhcp { ip, hostname, .. } = &ack.kind else {
        unreachable!()
    };
    assert_eq!(ip.as_deref(), Some("10.77.0.150"));
    assert_eq!(hostname.as_deref(), Some("fixed1"));
    r.wait_until("the machine's DHCP phase", |e| {
        e.get(&id).is_some_and(|m| m.phases.dhcp.is_some())
    })
    .await;
    r.wait_until("the lease of the static address", |e| {
        e.leases().iter().any(|l| l.ip.to_string() == "10.77.0.150")
    })
    .await;
    let lease = r
        .engine
        .leases()
        .into_iter()
        .find(|l| l.ip.to_string() == "10.77.0.150")
        .expect("lease for the static address");
    assert_eq!(lease.machine, Some(id));

    let state = r
        .engine
        .services()
        .into_iter()
        .find(|s| s.name == SERVICE)
        .expect("service");
    assert_eq!(state.restarts, 0);
    assert_eq!(*r.pid.borrow(), Some(pid));
    r.stop().await;
}

#[tokio::test]
async fn a_missing_interface_is_a_status_and_is_picked_up_when_it_appears() {
    let Some(lab) = Lab::new(false) else { return };
    let mut r = start(&lab, lab.config("", ""), |_| {});
    let ev = r
        .wait_for("a status naming the missing interface", |k| {
            matches!(k, EventKind::Service { name, detail, .. }
                if name == SERVICE && detail.contains("interface mt0 does not exist"))
        })
        .await;
    let EventKind::Service {
        status, problem, ..
    } = &ev.kind
    else {
        unreachable!()
    };
    // a precondition, checked before dnsmasq is started: nothing restarts while it waits
    assert_eq!(*status, mayu::lease::ServiceStatus::Waiting);
    assert_eq!(
        problem.as_ref().map(|p| p.code.as_str()),
        Some("interface_missing")
    );
    lab.add_link();
    r.running().await;
    let (ok, out) = lab.udhcpc(&[]).await;
    assert!(ok, "udhcpc:\n{out}");
    r.stop().await;
}

#[tokio::test]
async fn proxy_mode_answers_pxe_clients_without_addresses() {
    let Some(lab) = Lab::new(true) else { return };
    let mut r = start(&lab, lab.config_with_dhcp("    mode: proxy", ""), |_| {});
    r.running().await;
    let pxe = [
        "-t",
        "3",
        "-V",
        "PXEClient:Arch:00000:UNDI:002001",
        "-x",
        "0x5d:0000",
    ];

    // Firmware PXE: a proxy offer with the boot menu, and no address of ours.
    let _ = lab.udhcpc(&pxe).await;
    let ev = r.wait_for("a proxy answer", |k| dhcp_of(k, "PXE")).await;
    let EventKind::Dhcp { ip, detail, .. } = &ev.kind else {
        unreachable!()
    };
    assert_eq!(*ip, None);
    assert!(detail.contains("bios"), "{detail}");
    assert!(detail.contains("proxy"), "{detail}");

    // iPXE asking through the proxy gets the HTTP script.
    let mut ipxe = pxe.to_vec();
    ipxe.extend(["-x", "0x4d:69505845"]);
    let _ = lab.udhcpc(&ipxe).await;
    let ev = r
        .wait_for("a proxy answer for iPXE", |k| {
            dhcp_of(k, "PXE")
                && matches!(k, EventKind::Dhcp { detail, .. } if detail.contains("iPXE"))
        })
        .await;
    let EventKind::Dhcp { detail, .. } = &ev.kind else {
        unreachable!()
    };
    assert!(
        detail.contains("boot http://10.77.0.1:4081/boot.ipxe"),
        "{detail}"
    );
    assert!(r.engine.leases().is_empty(), "a proxy hands out no leases");

    // The PXE exchange is the MAC's timeline, before any registration (issue 14: proxy mode
    // attaches what it answers, though it hands out no address).
    let mac: Mac = CLIENT_MAC.parse().expect("mac");
    let unregistered = r.engine.unregistered();
    let seen = unregistered
        .iter()
        .find(|u| u.mac == mac)
        .unwrap_or_else(|| panic!("the proxied client is not in the timelines: {unregistered:?}"));
    let steps: Vec<_> = seen
        .timeline
        .boots
        .iter()
        .flat_map(|b| b.steps.iter())
        .filter(|s| s.kind == mayu::timeline::StepKind::Dhcp)
        .collect();
    assert!(steps.len() >= 2, "both proxy answers are steps: {seen:?}");
    assert!(steps.iter().all(|s| s.detail.contains("PXE")), "{steps:?}");
    r.stop().await;
}

/// A test that needs only the dnsmasq binary (no namespace, no root).
fn have_dnsmasq() -> bool {
    let found = std::process::Command::new("dnsmasq")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        assert!(
            !in_ci(),
            "dnsmasq is not installed (Debian package dnsmasq-base)"
        );
        eprintln!("skipping: dnsmasq is not installed");
    }
    found
}

fn plain_config(dir: &Path, network: &str, templates: &Path) -> Config {
    let text = format!(
        "network:\n{network}\nassignment: manual\naudit: {{ git: false }}\nruntime: run\ntftproot: tftp\ntemplates: {}\n",
        templates.display()
    );
    let file = dir.join("config.yaml");
    std::fs::write(&file, text).expect("config");
    Config::load(&file).expect("config parses")
}

#[test]
fn every_mode_renders_a_config_dnsmasq_accepts() {
    if !have_dnsmasq() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    for network in [
        "  interface: mt0\n  address: 10.77.0.1\n  dhcp:\n    mode: full\n    range: [10.77.0.100, 10.77.0.200]\n    dns: [10.77.0.1]\n    known_only: true\n  ntp: [10.77.0.1]\n  domain: lab\n  uefi_snponly: true",
        "  interface: mt0\n  address: 10.77.0.1\n  dhcp:\n    mode: proxy",
        "  interface: mt0\n  address: 10.77.0.1\n  dhcp:\n    mode: off",
    ] {
        let config = plain_config(dir.path(), network, &templates);
        if let Err(e) = dnsmasq::check(&config) {
            panic!("{e}\n{}", dnsmasq::render_conf(&config).unwrap_or_default());
        }
    }
}

#[tokio::test]
async fn a_broken_config_is_refused_with_its_line_and_never_started() {
    if !have_dnsmasq() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).expect("templates");
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/dnsmasq.conf"),
    )
    .expect("shipped template");
    std::fs::write(
        templates.join("dnsmasq.conf"),
        shipped.replacen(
            "bind-interfaces\n",
            "bind-interfaces\nbind-everything=yes\n",
            1,
        ),
    )
    .expect("broken template");
    // Preconditions hold (loopback exists, the TFTP root has a file), so the self-test runs.
    std::fs::create_dir_all(dir.path().join("tftp")).expect("tftproot");
    std::fs::write(dir.path().join("tftp/undionly.kpxe"), "").expect("boot program");
    let config = plain_config(
        dir.path(),
        "  interface: lo\n  address: 10.77.0.1\n  dhcp:\n    mode: full\n    range: [10.77.0.100, 10.77.0.200]",
        &templates,
    );
    let rendered = dnsmasq::render_conf(&config).expect("renders");
    let want_line = rendered
        .lines()
        .position(|l| l == "bind-everything=yes")
        .expect("the bad line is rendered") as u32
        + 1;
    match dnsmasq::check(&config) {
        Err(dnsmasq::CheckError::SelfTest(SelfTestError::Refused {
            line,
            text,
            message,
            ..
        })) => {
            assert_eq!(line, Some(want_line));
            assert_eq!(text.as_deref(), Some("bind-everything=yes"));
            assert!(message.contains("bad option"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The supervisor shows the same complaint as its status and starts nothing.
    let engine = Engine::open(config).expect("engine");
    let mut events = engine.bus().subscribe();
    let sup = Supervisor::new(engine.clone(), Options::default());
    let pid = sup.pid();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(sup.run(cancel.clone()));
    let detail = failed_detail(&mut events, |status| {
        assert_ne!(status, mayu::lease::ServiceStatus::Running);
    })
    .await;
    assert!(
        detail.contains(&format!("dnsmasq.conf:{want_line}")),
        "{detail}"
    );
    assert!(detail.contains("`bind-everything=yes`"), "{detail}");
    assert_eq!(*pid.borrow(), None);
    cancel.cancel();
    task.await.expect("supervisor");
}

/// The detail of the first failed service status on `events`; `before` sees each status
/// that comes first.
async fn failed_detail(
    events: &mut broadcast::Receiver<Arc<Event>>,
    before: impl Fn(mayu::lease::ServiceStatus),
) -> String {
    tokio::time::timeout(WAIT, async {
        loop {
            let ev = events.recv().await.expect("bus");
            if let EventKind::Service { status, detail, .. } = &ev.kind {
                if *status == mayu::lease::ServiceStatus::Failed {
                    return detail.clone();
                }
                before(*status);
            }
        }
    })
    .await
    .expect("a failed status")
}

#[tokio::test]
async fn a_missing_binary_is_a_clear_status() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = plain_config(
        dir.path(),
        "  interface: mt0\n  address: 10.77.0.1\n  dnsmasq: /nonexistent/dnsmasq\n  dhcp:\n    mode: full\n    range: [10.77.0.100, 10.77.0.200]",
        &dir.path().join("no-templates"),
    );
    let engine = Engine::open(config).expect("engine");
    let mut events = engine.bus().subscribe();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(dnsmasq::run(engine.clone(), cancel.clone()));
    let detail = failed_detail(&mut events, |_| {}).await;
    assert!(detail.contains("/nonexistent/dnsmasq"), "{detail}");
    assert!(detail.contains("not found"), "{detail}");
    assert!(detail.contains("dnsmasq-base"), "{detail}");
    // The missing boot programs are named too (the TFTP root is filled from Debian's ipxe at
    // start when that is installed, which has no arm64 build; else every program is missing).
    assert!(detail.contains("missing boot programs"), "{detail}");
    assert!(detail.contains("ipxe-arm64.efi"), "{detail}");
    cancel.cancel();
    task.await.expect("supervisor");
}

#[tokio::test]
async fn dhcp_mode_off_reports_disabled() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = plain_config(
        dir.path(),
        "  interface: mt0\n  address: 10.77.0.1\n  dhcp:\n    mode: off",
        &PathBuf::from("templates"),
    );
    let engine = Engine::open(config).expect("engine");
    let cancel = CancellationToken::new();
    let mut events = engine.bus().subscribe();
    let task = tokio::spawn(dnsmasq::run(engine.clone(), cancel.clone()));
    let ev = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event")
        .expect("bus");
    assert!(
        matches!(&ev.kind, EventKind::Service { status, .. } if *status == mayu::lease::ServiceStatus::Disabled),
        "{}",
        ev.summary()
    );
    cancel.cancel();
    task.await.expect("supervisor");
}

/// Not a test on its own: when `MAYU_ORPHAN_HELPER` names a lab folder and namespace, this
/// process plays a mayu that runs dnsmasq there, prints the child's pid and waits to be
/// killed (see `a_killed_mayu_leaves_no_dnsmasq`).
#[test]
fn orphan_helper() {
    let Ok(spec) = std::env::var("MAYU_ORPHAN_HELPER") else {
        return;
    };
    let (dir, ns) = spec.split_once('|').expect("dir|namespace");
    let config = Config::load(&Path::new(dir).join("config.yaml")).expect("lab config");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let engine = Engine::open(config).expect("engine");
        let mut events = engine.bus().subscribe();
        let opts = Options {
            wrapper: ["ip", "netns", "exec", ns]
                .into_iter()
                .map(OsString::from)
                .collect(),
            ..Options::default()
        };
        let sup = Supervisor::new(engine, opts);
        let pid = sup.pid();
        let _task = tokio::spawn(sup.run(CancellationToken::new()));
        loop {
            let ev = events.recv().await.expect("bus");
            if matches!(&ev.kind, EventKind::Service { status, .. } if *status == mayu::lease::ServiceStatus::Running) {
                break;
            }
        }
        let pid = pid.borrow().expect("pid");
        // Straight to the pipe: libtest's capture of `println!` must not hold it back.
        let mut out = std::io::stdout().lock();
        writeln!(out, "pid={pid}").expect("write pid");
        out.flush().expect("flush pid");
        std::future::pending::<()>().await;
    });
}

#[tokio::test]
async fn a_killed_mayu_leaves_no_dnsmasq() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use tokio::io::{unix::AsyncFd, AsyncBufReadExt, BufReader};

    let Some(lab) = Lab::new(true) else { return };
    lab.config("", "");
    let mut helper = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "orphan_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "MAYU_ORPHAN_HELPER",
            format!("{}|{}", lab.path().display(), lab.server),
        )
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("helper");
    let mut lines = BufReader::new(helper.stdout.take().expect("stdout")).lines();
    let pid: i32 = tokio::time::timeout(WAIT, async {
        while let Some(l) = lines.next_line().await.expect("helper output") {
            // libtest prints `test orphan_helper ... ` on the same line first.
            if let Some((_, p)) = l.split_once("pid=") {
                return p.trim().parse().expect("pid");
            }
        }
        panic!("the helper ended without starting dnsmasq");
    })
    .await
    .expect("the helper starts dnsmasq");

    // A pidfd becomes readable when its process exits: an event to wait on, not a poll.
    // SAFETY: pidfd_open has no memory arguments; a negative result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        fd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `fd` is a fresh descriptor that nothing else owns; the OwnedFd inside the
    // AsyncFd keeps it open and unchanged for the AsyncFd's whole life.
    let pidfd = unsafe { AsyncFd::register(OwnedFd::from_raw_fd(fd as i32)) }
        .map_err(|e| e.to_string())
        .expect("pidfd");

    helper.start_kill().expect("SIGKILL the helper");
    helper.wait().await.expect("reap the helper");
    let _exited = tokio::time::timeout(WAIT, pidfd.readable())
        .await
        .unwrap_or_else(|_| panic!("dnsmasq {pid} outlived the mayu that started it"))
        .expect("pidfd readable");
}

#[tokio::test]
async fn an_ignored_client_is_listed_then_enrolled_and_answered() {
    let Some(lab) = Lab::new(true) else { return };
    let mut r = start(&lab, lab.config("    known_only: true", ""), |_| {});
    let pid = r.running().await;
    let mac: Mac = CLIENT_MAC.parse().expect("mac");

    // A PXE client mayu does not know: ignored, and remembered with what it sent.
    let vendor = "PXEClient:Arch:00000:UNDI:002001";
    let (ok, out) = lab.udhcpc(&["-t", "2", "-V", vendor]).await;
    assert!(!ok, "an unknown machine got an answer:\n{out}");
    let ev = r
        .wait_for("the ignored client announced", |k| {
            matches!(k, EventKind::Ignored { .. })
        })
        .await;
    let EventKind::Ignored { client } = &ev.kind else {
        unreachable!()
    };
    assert_eq!(client.mac, mac);
    assert_eq!(client.vendor_class.as_deref(), Some(vendor));
    r.wait_until("both DISCOVERs counted", |e| {
        e.ignored().first().is_some_and(|c| c.count >= 2)
    })
    .await;
    let listed = r.engine.ignored();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].last_seen >= listed[0].first_seen);

    // Enrolled by an operator: one write, off the ignored list, into the hostsfile by SIGHUP.
    let m = r
        .engine
        .enrol(
            mayu::engine::Enrolment {
                mac: Some(mac),
                hostname: Some("enrolled1".into()),
                ..Default::default()
            },
            "operator",
        )
        .expect("enrol");
    assert!(r.engine.ignored().is_empty());
    assert_eq!(m.hostname.as_deref(), Some("enrolled1"));
    r.wait_for("hostsfile re-read", |k| {
        matches!(k, EventKind::Service { name, status, detail, .. }
            if name == SERVICE && *status == mayu::lease::ServiceStatus::Running && detail.contains("hostsfile re-read: 1 machines"))
    })
    .await;
    let (ok, out) = lab.udhcpc(&["-V", vendor]).await;
    assert!(ok, "the enrolled machine got no lease:\n{out}");
    let ack = r
        .wait_for("DHCPACK for the enrolled machine", |k| {
            dhcp_of(k, "DHCPACK")
        })
        .await;
    let EventKind::Dhcp { hostname, .. } = &ack.kind else {
        unreachable!()
    };
    assert_eq!(hostname.as_deref(), Some("enrolled1"));
    // Known now: its DISCOVERs are answered, so nothing new is ignored.
    assert!(r.engine.ignored().is_empty());
    assert_eq!(*r.pid.borrow(), Some(pid), "dnsmasq was restarted");
    r.stop().await;
}

#[tokio::test]
async fn dhcp_and_tftp_steps_join_the_timeline_from_the_first_packet() {
    let Some(lab) = Lab::new(true) else { return };
    let mut r = start(&lab, lab.config("", ""), |_| {});
    r.running().await;
    let mac: Mac = CLIENT_MAC.parse().expect("mac");
    // The client takes the leased address as its only one, so its TFTP comes from it.
    let script = lab.path().join("bound.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && ip addr flush dev \"$interface\" && ip addr add \"$ip/24\" dev \"$interface\"\nexit 0\n",
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = script.to_str().expect("utf-8");
    let vendor = "PXEClient:Arch:00000:UNDI:002001";
    let (ok, out) = lab.udhcpc_script(script, &["-V", vendor]).await;
    assert!(ok, "no lease:\n{out}");
    r.wait_for("the ACK in the MAC's timeline", |k| {
        matches!(k, EventKind::TimelineStep { mac: Some(m), id: None, step, .. }
            if *m == mac && step.detail.starts_with("DHCPACK"))
    })
    .await;
    let got = lab.path().join("got.kpxe");
    let (ok, out) = lab.tftp_get("undionly.kpxe", &got).await;
    assert!(ok, "tftp failed:\n{out}");
    r.wait_for("the TFTP step under the MAC", |k| {
        matches!(k, EventKind::TimelineStep { mac: Some(m), step, .. }
            if *m == mac && step.kind == mayu::timeline::StepKind::Tftp)
    })
    .await;
    let unregistered = r.engine.unregistered();
    assert_eq!(unregistered.len(), 1, "{unregistered:?}");
    assert_eq!(unregistered[0].mac, mac);

    // It registers (its iPXE script request): what DHCP and TFTP saw joins its boot 1, first.
    let m = r
        .engine
        .register(
            mayu::engine::Registration {
                mac: Some(mac),
                ..Default::default()
            },
            mayu::machine::Phase::Ipxe,
        )
        .expect("register");
    r.wait_for("the merge", |k| {
        matches!(k, EventKind::TimelineMerged { .. })
    })
    .await;
    r.engine.boot_step(
        Some(&m.id),
        mayu::machine::Phase::Ipxe,
        "script".into(),
        None,
        None,
    );
    r.engine.boot_step(
        Some(&m.id),
        mayu::machine::Phase::Kernel,
        "vmlinuz".into(),
        None,
        None,
    );
    assert!(r.engine.unregistered().is_empty());
    let t = r.engine.timeline(&m.id);
    assert_eq!(t.boots.len(), 1, "{t:?}");
    let kinds: Vec<&str> = t.boots[0].steps.iter().map(|s| s.kind.as_str()).collect();
    let first_tftp = kinds.iter().position(|k| *k == "tftp").expect("tftp step");
    let ipxe = kinds.iter().position(|k| *k == "ipxe").expect("ipxe step");
    assert_eq!(kinds[0], "dhcp", "{kinds:?}");
    assert!(first_tftp < ipxe && ipxe < kinds.len() - 1, "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"kernel"));

    // Powered on again: the firmware's DHCP opens boot 2; boot 1 keeps its steps.
    let (ok, out) = lab.udhcpc(&["-V", vendor]).await;
    assert!(ok, "no lease the second time:\n{out}");
    let ev = r
        .wait_for("a step of boot 2", |k| {
            matches!(
                k,
                EventKind::TimelineStep {
                    id: Some(_),
                    boot: 2,
                    ..
                }
            )
        })
        .await;
    let EventKind::TimelineStep { id, step, .. } = &ev.kind else {
        unreachable!()
    };
    assert_eq!(id.as_ref(), Some(&m.id));
    assert_eq!(step.kind, mayu::timeline::StepKind::Dhcp);
    let t = r.engine.timeline(&m.id);
    assert_eq!(t.boots.len(), 2);
    assert_eq!(
        t.boots[0].steps.last().map(|s| s.kind.as_str()),
        Some("kernel")
    );
    r.stop().await;
}
