//! End-to-end enrolment as an operator does it (issue 14 item 4): the real `mayu` console in a
//! tmux pane, inside a network namespace this test creates, serving DHCP with `known_only` on a
//! veth; busybox `udhcpc` in a second namespace plays a new server whose MAC nobody knows. It
//! is ignored, shows on the leases page, is enrolled with `a`, Enter and `y`, and its next
//! DHCP request gets a lease. Needs root, `ip netns`, dnsmasq, busybox and tmux; with
//! `CI=true` a missing one fails the test instead of skipping it.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::repo;
use support::tmux::{Tmux, PATIENCE};

const MAC: &str = "52:54:00:e7:00:05";

fn run(argv: &[&str]) -> Output {
    Command::new(argv[0]).args(&argv[1..]).output().unwrap()
}

fn ok(argv: &[&str]) {
    let o = run(argv);
    assert!(
        o.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Why this machine cannot run the test, if it cannot.
fn missing() -> Option<String> {
    let uid = run(&["id", "-u"]);
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (namespaces and DHCP need root)".into());
    }
    for tool in ["tmux", "busybox", "dnsmasq", "ip"] {
        let found = Command::new("sh")
            .args([
                "-c",
                &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// Two namespaces joined by a veth (server `mt0` 10.77.0.1/24, client `eth0` with [`MAC`]);
/// deleted when dropped, with whatever still runs in them.
struct Net {
    server: String,
    client: String,
}

impl Net {
    fn new() -> Net {
        let tag = std::process::id();
        let net = Net {
            server: format!("mayu-e-{tag}-s"),
            client: format!("mayu-e-{tag}-c"),
        };
        ok(&["ip", "netns", "add", &net.server]);
        ok(&["ip", "netns", "add", &net.client]);
        let (s, c) = (net.server.as_str(), net.client.as_str());
        ok(&[
            "ip", "link", "add", "mt0", "netns", s, "type", "veth", "peer", "name", "eth0",
            "netns", c,
        ]);
        ok(&["ip", "-n", s, "addr", "add", "10.77.0.1/24", "dev", "mt0"]);
        ok(&["ip", "-n", c, "link", "set", "eth0", "address", MAC]);
        ok(&["ip", "-n", s, "link", "set", "mt0", "up"]);
        ok(&["ip", "-n", s, "link", "set", "lo", "up"]);
        ok(&["ip", "-n", c, "link", "set", "eth0", "up"]);
        net
    }

    /// One DHCP attempt from the client, as a PXE client; true when it got a lease.
    fn dhcp(&self) -> (bool, String) {
        let o = run(&[
            "ip",
            "netns",
            "exec",
            &self.client,
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-n",
            "-q",
            "-t",
            "4",
            "-T",
            "2",
            "-V",
            "PXEClient:Arch:00000:UNDI:002001",
            "-s",
            "/bin/true",
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let pids = run(&["ip", "netns", "pids", ns]);
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = run(&["kill", "-KILL", pid]);
            }
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

#[test]
fn an_ignored_server_is_enrolled_from_the_console_and_then_answered() {
    if let Some(why) = missing() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    support::copy_shipped(dir.path());
    let shipped = std::fs::read_to_string(repo().join("config.yaml")).unwrap();
    let config = shipped
        .replace("interface: mayu0", "interface: mt0")
        .replace("lease_time: 1h", "lease_time: 1h\n    known_only: true")
        .replace("assignment: auto", "assignment: manual")
        .replace(
            "tftproot: tftproot",
            &format!("tftproot: {}", repo().join("tftproot").display()),
        );
    assert_ne!(config, shipped, "the shipped config changed shape");
    std::fs::write(
        dir.path().join("config.yaml"),
        format!("{config}\noperator: e2e-operator\n"),
    )
    .unwrap();
    let net = Net::new();
    let command = format!(
        "ip netns exec {} {} --config config.yaml",
        net.server,
        env!("CARGO_BIN_EXE_mayu")
    );
    let pane = Tmux::start(&command, dir.path());
    pane.wait_for("dnsmasq serving on mt0", |s| {
        s.contains("dnsmasq full on mt0")
    });

    // A server nobody enrolled asks for an address: ignored.
    let (got, out) = net.dhcp();
    assert!(!got, "an unknown MAC got a lease:\n{out}");
    pane.keys(&["3"]);
    pane.wait_for("the ignored client on the leases page", |s| {
        s.contains("Ignored") && s.contains(MAC)
    });

    // a, the picker (on a profile with room), Enter, then the question naming the MAC, y
    pane.keys(&["a"]);
    pane.wait_for("the enrol picker", |s| s.contains(&format!("Enrol {MAC}")));
    pane.keys(&["Enter"]);
    pane.wait_for("the question", |s| s.contains(&format!("Enrol {MAC}?")));
    pane.keys(&["y"]);
    let file = dir.path().join("inventory").join("52-54-00-e7-00-05.json");
    let deadline = Instant::now() + PATIENCE;
    while !file.exists() {
        assert!(
            Instant::now() < deadline,
            "no machine file {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    pane.wait_for("the ignored list emptied", |s| !s.contains("Ignored"));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(m["macs"][0], MAC);
    assert!(m["profile"].is_string(), "enrolled into a profile: {m}");

    // Known now: dnsmasq re-read its hostsfile and answers the same server.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (got, out) = net.dhcp();
        if got {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the enrolled server got no lease:\n{out}"
        );
    }
    // It is booting now (its DHCP): quitting asks first, naming how many.
    pane.keys(&["q"]);
    pane.wait_for("the quit question", |s| s.contains("1 machine is booting"));
    pane.keys(&["y"]);
    let deadline = Instant::now() + PATIENCE;
    while pane.pane("#{pane_dead}") != "1" {
        assert!(Instant::now() < deadline, "the console did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}
