//! Power control over IPMI against real BMCs: OpenIPMI's `ipmi_sim` driven by mayu's power
//! client (Debian's `ipmitool -I lanplus`).
//!
//! - `power_over_the_api_and_mayuctl`: a BMC without a VM (its own power state) on loopback;
//!   `POST /api/v1/machines/{id}/power` and `mayuctl power` switch it on, off, through cycles
//!   and "reinstall now"; machine JSON carries `power`; bad input, a machine without a BMC and a
//!   BMC that does not answer get their 4xx/504 with a reason; the poller refreshes every
//!   machine; the BMC password appears in no answer and no event.
//! - `a_qemu_machine_powered_by_its_bmc`: in a network namespace this test creates, `ipmi_sim`
//!   at 10.77.0.20:623 joined to a QEMU machine (TCG) through `ipmi-bmc-extern`: power on
//!   starts the VM (its kernel boots), off ends the QEMU process, a cycle starts a new one, and
//!   a BMC address nobody answers on is `unreachable` within the timeout.
//! - `reinstall_now_over_ipmi`: the QEMU install lab (`tests/support/qemu.rs`: mayu, dnsmasq,
//!   the lab installer) with the machine behind its BMC: it installs to disk and powers off;
//!   "reinstall now" over the API powers it on through the BMC, it network-boots the installer
//!   again, installs, boots its disk and reports boot-complete.
//! - `a_readable_secrets_file_stops_the_start_naming_it`: `power:` with a 0644 secrets file.
//!
//! Without `ipmi_sim`/`ipmitool` (Debian `openipmi`, `ipmitool`; `scripts/install-deps.sh`),
//! root or QEMU the tests say why and return, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[path = "support/bmc.rs"]
mod bmc;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use bmc::{write_secrets, Bmc, BmcSpec};
use mayu::engine::Edit;
use mayu::machine::{Machine, Phase, Rack};
use mayu::power::{Power, PowerAction, PowerError, PowerSettings, PowerState, Secrets};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// `None` when the test can run; otherwise why not (a failure under `CI=true`).
fn missing(test: &str, tools: &[(&str, &str)], root: bool) -> bool {
    let mut why = Vec::new();
    for (tool, package) in tools {
        if !on_path(tool) {
            why.push(format!("{tool} (Debian {package})"));
        }
    }
    // SAFETY: geteuid(2) cannot fail.
    if root && unsafe { libc::geteuid() } != 0 {
        why.push("root (network namespaces)".into());
    }
    if why.is_empty() {
        return false;
    }
    let reason = format!("missing {}; see scripts/install-deps.sh", why.join(", "));
    if in_ci() {
        panic!("{test} cannot run in CI: {reason}");
    }
    eprintln!("{test}: not run: {reason}");
    true
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn with_bmc(engine: &mayu::Engine, n: u32, addr: Option<&str>, rack: Option<&str>) -> Machine {
    let m = engine.register(support::reg(n), Phase::Ipxe).unwrap();
    if addr.is_none() && rack.is_none() {
        return m;
    }
    engine
        .edit(
            m.id.as_str(),
            "ops",
            Edit {
                ipmi_addr: addr.map(str::to_string),
                rack: rack.map(|r| Rack {
                    rack: r.into(),
                    unit: None,
                }),
                ..Default::default()
            },
        )
        .unwrap()
}

struct Server {
    url: String,
    admin: String,
    cancel: tokio_util::sync::CancellationToken,
}

async fn serve(state: mayu::api::ApiState) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let cancel = tokio_util::sync::CancellationToken::new();
    let router = mayu::api::router(state);
    tokio::spawn(mayu::api::serve(listener, router, cancel.clone()));
    Server {
        url,
        admin: String::new(),
        cancel,
    }
}

impl Server {
    async fn post_power(&self, id: &str, body: Value) -> (u16, Value, String) {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/machines/{id}/power", self.url))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    }

    async fn machine(&self, id: &str) -> (Value, String) {
        let text = reqwest::Client::new()
            .get(format!("{}/api/v1/machines/{id}", self.url))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (serde_json::from_str(&text).unwrap(), text)
    }

    /// `mayuctl ARGS` against this server: (exit code, stdout, stderr).
    async fn mayuctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mayuctl"))
            .args(["--server", &self.url, "--token", &self.admin])
            .args(args)
            .output()
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_over_the_api_and_mayuctl() {
    const TEST: &str = "power_over_the_api_and_mayuctl";
    if missing(
        TEST,
        &[("ipmi_sim", "openipmi"), ("ipmitool", "ipmitool")],
        false,
    ) {
        return;
    }
    let lab = support::Lab::new(&[]);
    let mut spec = BmcSpec::new("api", "127.0.0.1", free_udp_port(), free_tcp_port());
    spec.password = "Sw0rdfish-api-7".into();
    let password = spec.password.clone();
    let sim = {
        let dir = lab.path().to_path_buf();
        tokio::task::spawn_blocking(move || Bmc::start(&dir, spec, None))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let dead_port = free_udp_port();

    let engine = lab.engine();
    let (_, mut rx) = engine.subscribe();
    let m = with_bmc(&engine, 1, Some("127.0.0.1"), None);
    let no_bmc = with_bmc(&engine, 2, None, None);
    // Rack `dark`'s credentials point at a port where no BMC answers.
    let dark = with_bmc(&engine, 3, Some("127.0.0.1"), Some("dark"));
    assert!(m.profile.is_some(), "{m:?}");

    let secrets = lab.path().join("bmc-secrets.yaml");
    write_secrets(
        &secrets,
        &format!(
            "default: {{ user: admin, password: \"{password}\" }}\n\
             racks:\n  dark: {{ user: admin, password: \"{password}\", port: {dead_port} }}\n"
        ),
    );
    let mut settings = PowerSettings::new(secrets.clone());
    settings.port = sim.spec.lan_port;
    settings.timeout = Duration::from_secs(4);
    let power = Power::open(engine.clone(), settings.clone()).unwrap();

    let (tokens, created) =
        mayu::tokens::Tokens::load_or_create(&lab.path().join("tokens.json")).unwrap();
    let metrics = mayu::metrics::Metrics::new();
    let feed = tokio_util::sync::CancellationToken::new();
    metrics.spawn_feed(engine.clone(), feed.clone());
    let state =
        mayu::api::ApiState::new(engine.clone(), tokens, metrics.clone()).with_power(power.clone());
    let mut server = serve(state).await;
    server.admin = created.unwrap().secret;
    let id = m.id.as_str();
    let mut answers = String::new();

    // Off to begin with: ipmi_sim starts with its power off.
    let (s, v, text) = server.post_power(id, json!({"action": "status"})).await;
    assert_eq!(
        (s, v["power"]["state"].as_str()),
        (200, Some("off")),
        "{text}"
    );
    answers += &text;

    let (s, v, text) = server.post_power(id, json!({"action": "on"})).await;
    assert_eq!(
        (s, v["power"]["state"].as_str()),
        (200, Some("on")),
        "{text}"
    );
    answers += &text;
    assert!(
        sim.wait_vm(Duration::from_secs(10), |p| p.is_some()),
        "power on ran nothing"
    );
    let (v, text) = server.machine(id).await;
    assert_eq!(v["power"]["state"], "on", "{text}");
    assert!(v["power"]["checked_at"].is_string(), "{text}");
    answers += &text;

    let (code, out, err) = server.mayuctl(&["power", id, "status"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("{id}: power on")), "{out}");
    // Mayu's order works too.
    let (code, out, err) = server.mayuctl(&["power", "off", id]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("power off -> off"), "{out}");
    answers += &out;
    assert!(
        sim.wait_vm(Duration::from_secs(15), |p| p.is_none()),
        "power off left it running"
    );
    // ipmi_sim says off once it has reaped the process (a moment after it has gone).
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim
        .ipmitool(None, &["chassis", "power", "status"])
        .unwrap()
        .trim()
        != "Chassis Power is off"
    {
        assert!(Instant::now() < deadline, "ipmi_sim still says on");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A cycle of a machine that is off powers it on; of one that is on, a new process.
    let (s, v, text) = server.post_power(id, json!({"action": "cycle"})).await;
    assert_eq!(
        (s, v["power"]["state"].as_str()),
        (200, Some("on")),
        "{text}"
    );
    assert!(sim.wait_vm(Duration::from_secs(10), |p| p.is_some()));
    let first = sim.vm_pid();
    let (s, _, text) = server.post_power(id, json!({"action": "cycle"})).await;
    assert_eq!(s, 200, "{text}");
    assert!(
        sim.wait_vm(Duration::from_secs(15), |p| p.is_some() && p != first),
        "a cycle kept the same machine process"
    );

    // Reinstall now: the flag is set, the BMC asked for PXE (ipmi_sim refuses; said in a note)
    // and the machine power-cycled.
    let (s, v, text) = server.post_power(id, json!({"action": "reinstall"})).await;
    assert_eq!(
        (s, v["power"]["state"].as_str()),
        (200, Some("on")),
        "{text}"
    );
    assert!(
        v["note"]
            .as_str()
            .unwrap_or("")
            .contains("next boot from the network"),
        "{text}"
    );
    assert!(
        engine.get(&m.id).unwrap().reinstall,
        "reinstall flag not set"
    );
    answers += &text;
    let (code, out, err) = server.mayuctl(&["power", "reinstall", id]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("reinstalling now"), "{out}");

    // Refused with a reason, nothing done.
    let (s, v, text) = server.post_power(id, json!({"action": "dance"})).await;
    assert_eq!(s, 400, "{text}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("unknown power action `dance`"),
        "{text}"
    );
    let (code, _, err) = server.mayuctl(&["power", id, "dance"]).await;
    assert_eq!(code, 2, "{err}");
    let (s, v, text) = server
        .post_power(no_bmc.id.as_str(), json!({"action": "on"}))
        .await;
    assert_eq!(s, 422, "{text}");
    assert!(
        v["detail"].as_str().unwrap().contains("has no BMC address"),
        "{text}"
    );
    let (s, _, text) = server.post_power("sn-none", json!({"action": "on"})).await;
    assert_eq!(s, 404, "{text}");

    // A BMC that does not answer: 504 within the timeout, `unreachable` in the machine.
    let t0 = Instant::now();
    let (s, v, text) = server
        .post_power(dark.id.as_str(), json!({"action": "status"}))
        .await;
    assert_eq!(s, 504, "{text}");
    assert!(
        v["detail"].as_str().unwrap().contains("127.0.0.1"),
        "{text}"
    );
    assert!(
        t0.elapsed() < settings.timeout + Duration::from_secs(3),
        "{:?}",
        t0.elapsed()
    );
    let (v, text) = server.machine(dark.id.as_str()).await;
    assert_eq!(v["power"]["state"], "unreachable", "{text}");
    assert!(v["power"]["error"].is_string(), "{text}");
    answers += &text;

    // No credentials at all: refused before ipmitool runs.
    let bare = Power::with_secrets(engine.clone(), settings.clone(), Secrets::default());
    match bare.act(&m, PowerAction::On, "ops").await {
        Err(e @ PowerError::NoCredentials { .. }) => {
            assert!(e.to_string().contains("no BMC credentials"), "{e}")
        }
        other => panic!("{other:?}"),
    }

    // The poller: every machine with a BMC address, at once.
    power.poll_once().await;
    let all = power.statuses();
    assert_eq!(all[&m.id].state, PowerState::On, "{all:?}");
    assert_eq!(all[&dark.id].state, PowerState::Unreachable, "{all:?}");
    assert!(!all.contains_key(&no_bmc.id), "{all:?}");

    // Power events followed every change; none carries the password, nor did any answer.
    let mut events = Vec::new();
    let mut last = 0;
    while let Ok(ev) = rx.try_recv() {
        last = ev.seq;
        events.push(serde_json::to_string(&*ev).unwrap());
    }

    // The metrics follow the same events: machines by power state, actions by outcome.
    metrics.counted(last).await;
    let scrape = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "mayu_machines_power{state=\"on\"} 1",
        "mayu_machines_power{state=\"unreachable\"} 1",
        "mayu_power_actions_total{action=\"off\",state=\"off\"} 1",
    ] {
        assert!(
            scrape.lines().any(|l| l == line),
            "no `{line}` in\n{scrape}"
        );
    }
    if on_path("promtool") {
        let mut check = std::process::Command::new("promtool");
        check
            .args(["check", "metrics"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let out = support::with_stdin(&mut check, scrape.as_bytes()).unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    feed.cancel();
    let power_events: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("\"type\":\"power\""))
        .collect();
    assert!(
        power_events
            .iter()
            .any(|e| e.contains("\"action\":\"off\"") && e.contains("\"state\":\"off\"")),
        "{power_events:#?}"
    );
    assert!(
        power_events.iter().any(|e| e.contains("unreachable")),
        "{power_events:#?}"
    );
    for text in events.iter().chain(std::iter::once(&answers)) {
        assert!(!text.contains(&password), "the BMC password leaked: {text}");
    }
    server.cancel.cancel();
    drop(sim);
}

/// Moves this thread into network namespace `ns`.
fn enter_namespace(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: setns(2) with a valid namespace fd; it affects only this thread.
    assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test's namespace, removed (with anything left in it) when dropped.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill(2) on a process inside the namespace this test created.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn a_qemu_machine_powered_by_its_bmc() {
    const TEST: &str = "a_qemu_machine_powered_by_its_bmc";
    let tools = [
        ("ipmi_sim", "openipmi"),
        ("ipmitool", "ipmitool"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("ip", "iproute2"),
    ];
    if missing(TEST, &tools, true) {
        return;
    }
    let build = Command::new(support::repo().join("scripts/build-discovery.sh"))
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let images = support::repo().join("images/discovery");

    let ns = Namespace(format!("mayu-ipmi-{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
    ip(&["-n", &ns.0, "link", "add", "bmcnet", "type", "bridge"]);
    ip(&["-n", &ns.0, "addr", "add", "10.77.0.20/24", "dev", "bmcnet"]);
    ip(&["-n", &ns.0, "link", "set", "bmcnet", "up"]);

    let lab = support::Lab::new(&[]);
    let serial = lab.path().join("vm.serial.log");
    let mut spec = BmcSpec::new("vm0", "10.77.0.20", 623, 9000);
    // The discovery kernel with a shell as init that waits on the (silent) console: the
    // machine stays up until its BMC powers it off.
    spec.vm = Some(
        [
            "-name",
            "mayu-ipmi-vm0",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "128",
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
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "-serial".into(),
            format!("file:{}", serial.display()),
            "-kernel".into(),
            images.join("vmlinuz").display().to_string(),
            "-initrd".into(),
            images.join("initrd.img").display().to_string(),
            "-append".into(),
            "console=ttyS0 rdinit=/bin/sh panic=1".into(),
        ])
        .collect(),
    );
    let sim = Bmc::start(lab.path(), spec.clone(), Some(&ns.0)).unwrap_or_else(|e| panic!("{e}"));
    let secrets = lab.path().join("bmc-secrets.yaml");
    write_secrets(&secrets, &spec.default_secrets());
    let mut settings = PowerSettings::new(secrets);
    settings.timeout = Duration::from_secs(5);
    let engine = lab.engine();
    let m = with_bmc(&engine, 1, Some("10.77.0.20"), None);
    let nobody = with_bmc(&engine, 2, Some("10.77.0.99"), None);
    let power = Power::open(engine.clone(), settings.clone()).unwrap();

    let outcome = std::thread::scope(|s| {
        s.spawn(|| {
            enter_namespace(&ns.0);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                assert_eq!(power.check(&m).await.state, PowerState::Off);
                assert_eq!(sim.vm_pid(), None);

                let o = power.act(&m, PowerAction::On, "ops").await.unwrap();
                assert_eq!(o.power.state, PowerState::On);
                assert!(
                    sim.wait_vm(Duration::from_secs(10), |p| p.is_some()),
                    "{}",
                    sim.log()
                );
                // The VM really runs: its kernel boots on the serial console.
                let deadline = Instant::now() + Duration::from_secs(120);
                while !std::fs::read_to_string(&serial)
                    .unwrap_or_default()
                    .contains("Linux version")
                {
                    assert!(Instant::now() < deadline, "the VM never booted its kernel");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                assert_eq!(power.check(&m).await.state, PowerState::On);

                // Off: asked over the VM link, QEMU exits.
                let o = power.act(&m, PowerAction::Off, "ops").await.unwrap();
                assert_eq!(o.power.state, PowerState::Off);
                assert!(
                    sim.wait_vm(Duration::from_secs(20), |p| p.is_none()),
                    "QEMU still runs"
                );
                // ipmi_sim says off once it has reaped QEMU (a moment after QEMU has gone).
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let st = power.check(&m).await.state;
                    if st == PowerState::Off {
                        break;
                    }
                    assert!(Instant::now() < deadline, "still {st} after QEMU exited");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }

                // Cycle from off: on; cycle from on: a new QEMU process.
                power.act(&m, PowerAction::Cycle, "ops").await.unwrap();
                assert!(sim.wait_vm(Duration::from_secs(10), |p| p.is_some()));
                let first = sim.vm_pid();
                let o = power.act(&m, PowerAction::Cycle, "ops").await.unwrap();
                assert_eq!(o.power.state, PowerState::On);
                assert!(
                    sim.wait_vm(Duration::from_secs(30), |p| p.is_some() && p != first),
                    "a cycle kept the same QEMU process"
                );
                assert_eq!(power.check(&m).await.state, PowerState::On);

                // Nobody at that address: unreachable, within the timeout.
                let t0 = Instant::now();
                let st = power.check(&nobody).await;
                assert_eq!(st.state, PowerState::Unreachable, "{st:?}");
                assert!(
                    t0.elapsed() < settings.timeout + Duration::from_secs(3),
                    "{:?}",
                    t0.elapsed()
                );

                power.act(&m, PowerAction::Off, "ops").await.unwrap();
                assert!(sim.wait_vm(Duration::from_secs(20), |p| p.is_none()));
            });
        })
        .join()
    });
    if let Err(panic) = outcome {
        eprintln!("--- ipmi_sim log ---\n{}", sim.log());
        eprintln!(
            "--- serial (tail) ---\n{}",
            std::fs::read_to_string(&serial)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::panic::resume_unwind(panic);
    }
    drop(sim);
}

/// `power:` whose secrets file others could read: mayu does not start, and says which file.
#[tokio::test]
async fn a_readable_secrets_file_stops_the_start_naming_it() {
    let lab = support::Lab::new(&[(
        "templates_env:",
        "power: { secrets: bmc-secrets.yaml, poll: 0s }\ntemplates_env:",
    )]);
    let file = lab.path().join("bmc-secrets.yaml");
    std::fs::write(&file, "default: { user: admin, password: hunter2 }\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = lab.config();
    assert_eq!(config.power.as_ref().unwrap().secrets, file);
    let engine = mayu::Engine::open(config).unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let e = match mayu::services::start(engine.clone(), cancel.clone()).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("mayu started with a secrets file of mode 0644"),
    };
    cancel.cancel();
    assert!(e.contains(&file.display().to_string()), "{e}");
    assert!(e.contains("0644") && e.contains("chmod 600"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");

    // Inside the inventory (a git repository): refused too.
    let inside = engine.config().inventory.join("bmc-secrets.yaml");
    write_secrets(&inside, "default: { user: admin, password: hunter2 }\n");
    let mut settings = engine.config().power.clone().unwrap();
    settings.secrets = inside.clone();
    let e = Power::open(engine.clone(), settings)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("inside the inventory"), "{e}");
    std::fs::remove_file(&inside).unwrap();

    // 0600: it starts, with the power service reported.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let services = mayu::services::start(engine.clone(), cancel.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let power = engine.services().into_iter().find(|s| s.name == "power");
    assert!(power.is_some(), "{:?}", engine.services());
    assert!(services.power.is_some(), "the console gets no power handle");
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), services.stopped())
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// "Reinstall now", end to end: a QEMU machine behind its BMC installs to disk, reports
// boot-complete and powers off; `POST .../power {"action": "reinstall"}` sets its reinstall
// flag and powers it on through the BMC; it network-boots the installer again, installs,
// boots the disk and reports boot-complete again.

mod reinstall {
    use super::*;
    use support::qemu::{self, str_of, Guest, Lab, Needs};

    const TEST: &str = "reinstall_now_over_ipmi";
    const BMC_ADDR: &str = "10.77.0.20";
    /// Bounds that only stop a hung run: one install takes about a minute on an idle core.
    const INSTALL_TIMEOUT: Duration = Duration::from_secs(420);
    const MACHINE: Guest = Guest {
        name: "machine",
        serial: "MAYU-IPMI-1",
        mac: "52:54:00:77:03:01",
        tap: "tap0",
    };

    async fn scenario(lab: &Lab, sim: &Bmc, api: &qemu::Api) {
        let id = MACHINE.id();
        let token = std::fs::read_to_string(lab.file("tokens.json.admin")).unwrap();
        let token = token.trim();

        // Power-on 1 by hand at the BMC: the machine registers, installs, reports in from its
        // disk and powers itself off.
        sim.ipmitool(Some(&lab.ns), &["chassis", "power", "on"])
            .unwrap();
        let first = api.installed(lab, &MACHINE, 0, INSTALL_TIMEOUT).await;
        assert!(
            sim.wait_vm(Duration::from_secs(120), |p| p.is_none()),
            "the installed system did not power off"
        );

        // The operator gives mayu the machine's BMC, then: reinstall now.
        let base = format!("http://127.0.0.1:4080/api/v1/machines/{id}");
        let resp = api
            .http
            .patch(&base)
            .bearer_auth(token)
            .json(&json!({"ipmi_addr": BMC_ADDR}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
        let resp = api
            .http
            .post(format!("{base}/power"))
            .bearer_auth(token)
            .json(&json!({"action": "reinstall"}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{body:#}");
        assert_eq!(body["power"]["state"], "on", "{body:#}");
        assert!(sim.wait_vm(Duration::from_secs(10), |p| p.is_some()));

        // Power-on 2 by mayu: the installer again (the flag), install, disk, boot-complete.
        let requested = api
            .machine_event(
                lab,
                &MACHINE,
                "reinstall requested",
                first,
                INSTALL_TIMEOUT,
                |e| str_of(e, "change").contains("reinstall"),
            )
            .await;
        let served = api
            .machine_event(
                lab,
                &MACHINE,
                "the installer served again",
                requested,
                INSTALL_TIMEOUT,
                |e| {
                    str_of(e, "type") == "boot_step"
                        && str_of(e, "phase") == "kernel"
                        && str_of(e, "detail").contains("installer/vmlinuz")
                },
            )
            .await;
        api.installed(lab, &MACHINE, served, INSTALL_TIMEOUT).await;
        let m = api.must_get(&format!("/api/v1/machines/{id}")).await;
        assert_eq!(str_of(&m, "state"), "running", "{m:#}");
        assert_eq!(m["reinstall"], Value::Bool(false), "{m:#}");
        assert_eq!(
            m.pointer("/power/state").and_then(Value::as_str),
            Some("on"),
            "{m:#}"
        );
    }

    #[test]
    fn reinstall_now_over_ipmi() {
        let needs = Needs {
            test: TEST,
            tools: &[
                ("cpio", "cpio"),
                ("extlinux", "extlinux"),
                ("ipmi_sim", "openipmi"),
                ("ipmitool", "ipmitool"),
            ],
            files: &[
                ("/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu"),
                ("/usr/lib/syslinux/mbr/mbr.bin", "syslinux-common"),
            ],
            images: &["build-install-image.sh"],
        };
        qemu::in_lab(
            &needs,
            || {
                let lab = Lab::create(TEST, format!("mayu-qr-{}", std::process::id()), &["tap0"])?;
                lab.address(BMC_ADDR)?;
                Ok(lab)
            },
            |lab, mayu| {
                Box::pin(async move {
                    std::fs::create_dir_all(lab.file("tftproot")).unwrap();
                    let mut spec = BmcSpec::new("bmc", BMC_ADDR, 623, 9000);
                    spec.vm = Some(
                        MACHINE
                            .installable(lab, &qemu::accel(), 256, "qemu-ipmi", 64)
                            .unwrap(),
                    );
                    let secrets = lab.file("bmc-secrets.yaml");
                    write_secrets(&secrets, &spec.default_secrets());
                    let sim = Bmc::start(&lab.file("bmc"), spec, Some(&lab.ns))
                        .unwrap_or_else(|e| panic!("{e}"));
                    let api = qemu::start_mayu(lab, mayu, &qemu::install_config(&secrets)).await;
                    scenario(lab, &sim, &api).await;
                })
            },
        );
    }
}
