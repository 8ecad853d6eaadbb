//! "Reinstall now" from the console key, end to end (issue 14 item 6): key → BMC → PXE boot →
//! install → boot-complete.
//!
//! The real `mayu` console runs in a tmux pane inside the QEMU lab's network namespace
//! (`tests/support/qemu.rs`: the bridge, dnsmasq, the lab installer), and one QEMU machine
//! (TCG) sits behind its BMC, OpenIPMI's `ipmi_sim` joined to QEMU's `ipmi-bmc-extern`
//! (`tests/support/bmc.rs`). Powered on by hand at the BMC, the machine registers, installs to
//! its disk, reports boot-complete from it and powers itself off. The operator gives mayu its
//! BMC address, then in the console selects it, presses `p`, picks "reinstall now" and
//! answers the question that names the machine with `y`. The test then follows mayu's event
//! stream: the reinstall requested and the BMC powering the machine on (a new QEMU process),
//! by the console's operator; a new network boot (DHCP, the install profile's iPXE script,
//! the installer's kernel); the install; iPXE handing it its disk; boot-complete. The API
//! shows it `running` again with a newer boot number in its timeline, and so do the table
//! and the detail pane.
//!
//! Needs root, iproute2, QEMU, dnsmasq, `ipmi_sim`/`ipmitool`, tmux and the packages of
//! `scripts/install-deps.sh`; without them the test says why and passes, except under
//! `CI=true`, where it fails.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[path = "../../tests/support/bmc.rs"]
mod bmc;
#[allow(dead_code)] // the other lab tests use the rest
#[path = "../../tests/support/qemu.rs"]
mod qemu;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use bmc::{write_secrets, Bmc, BmcSpec};
use qemu::{boot_step, step, str_of, Guest, Journey, Lab, Needs, Step};
use support::tmux::{Tmux, SESSION};

const TEST: &str = "reinstall_now_from_the_console_key";
const OPERATOR: &str = "e2e-operator";
const BMC_ADDR: &str = "10.77.0.20";
/// Bounds that only stop a hung run: one install takes about a minute on an idle core.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(420);
/// How long the console may take to show what the engine already did.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(30);
const MACHINE: Guest = Guest {
    name: "machine",
    serial: "MAYU-POWER-1",
    mac: "52:54:00:77:04:01",
    tap: "tap0",
};

/// The console in a tmux pane; on a failure it leaves its screen and log in the output.
struct Console {
    tmux: Tmux,
    logs: PathBuf,
}

impl Console {
    /// `mayu --config CONFIG` (the console and every service) in the lab's namespace.
    fn start(lab: &Lab, mayu: &Path, config: &Path) -> Console {
        let command = format!(
            "ip netns exec {} {} --config {}",
            lab.ns,
            mayu.display(),
            config.display()
        );
        Console {
            tmux: Tmux::start_sized(&command, &lab.file(""), 140, 40),
            logs: lab.file("logs"),
        }
    }

    /// Polls the screen until `cond` holds, letting the event stream run in between; fails
    /// after `timeout` with the screen and the lab's logs.
    async fn until(
        &self,
        lab: &Lab,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&str) -> bool,
    ) -> String {
        qemu::try_wait_for(lab, what, timeout, async || {
            let s = self.tmux.screen();
            cond(&s).then_some(s)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\nthe screen:\n{}", self.tmux.screen()))
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let screen = self.tmux.run(&["capture-pane", "-p", "-t", SESSION]);
        eprintln!(
            "--- the console ---\n{}",
            String::from_utf8_lossy(&screen.stdout)
        );
        for log in fs::read_dir(&self.logs).into_iter().flatten().flatten() {
            eprintln!(
                "--- {} (tail) ---\n{}",
                log.path().display(),
                qemu::tail(&log.path(), 40)
            );
        }
    }
}

/// Machine `id`'s row in the machines table on `screen` (`│▶ID …` or `│ ID …`; the detail
/// pane beside it starts further right).
fn row<'a>(screen: &'a str, id: &str) -> Option<&'a str> {
    screen.lines().find(|l| {
        l.split_once('│').is_some_and(|(_, rest)| {
            rest.strip_prefix('▶')
                .or_else(|| rest.strip_prefix(' '))
                .is_some_and(|r| r.starts_with(&format!("{id} ")))
        })
    })
}

/// Polls (async, so the event stream runs) until `cond` holds; false after `within`.
async fn eventually(within: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// The machine's boots as `GET .../timeline` answers: (number, step kinds and details).
async fn boots(api: &qemu::Api, id: &str) -> Vec<(u64, Vec<(String, String)>)> {
    let t = api
        .must_get(&format!("/api/v1/machines/{id}/timeline"))
        .await;
    t["boots"]
        .as_array()
        .unwrap_or_else(|| panic!("no boots: {t:#}"))
        .iter()
        .map(|b| {
            let steps = b["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    (
                        str_of(s, "kind").to_string(),
                        str_of(s, "detail").to_string(),
                    )
                })
                .collect();
            (b["number"].as_u64().unwrap(), steps)
        })
        .collect()
}

/// A change of the machine's; by `by` when given.
fn changed(change: &'static str, by: Option<&'static str>) -> Step {
    step(format!("machine_changed: {change} ({by:?})"), move |e| {
        str_of(e, "type") == "machine_changed"
            && str_of(e, "change").contains(change)
            && by.is_none_or(|by| str_of(e, "actor") == by)
    })
}

/// After `y`: what the console's "reinstall now" must set going, in this order.
fn reinstall_journey() -> Vec<Step> {
    vec![
        changed("reinstall requested", Some(OPERATOR)),
        step("power reinstall -> on, by the operator", |e| {
            str_of(e, "type") == "power"
                && str_of(e, "action") == "reinstall"
                && str_of(e, "actor") == OPERATOR
                && e.pointer("/power/state").and_then(Value::as_str) == Some("on")
        }),
        // The firmware's network boot, then the install profile again (the flag).
        step("DHCP from the machine's PXE firmware", |e| {
            str_of(e, "type") == "dhcp" && str_of(e, "detail").contains("PXEClient")
        }),
        boot_step("ipxe", "profile install script served"),
        boot_step("kernel", "installer/vmlinuz"),
        boot_step("initrd", "installer/initrd.img"),
        boot_step("config", "metadata served"),
        changed("installed to disk", None),
        boot_step("ipxe", "local disk"),
        boot_step("disk_boot", "reported in"),
        boot_step("boot_complete", "reported"),
    ]
}

async fn scenario(lab: &Lab, mayu: &Path) {
    let id = MACHINE.id();
    fs::create_dir_all(lab.file("tftproot")).unwrap();
    let mut spec = BmcSpec::new("bmc", BMC_ADDR, 623, 9000);
    spec.vm = Some(
        MACHINE
            .installable(lab, &qemu::accel(), 256, "qemu-power", 64)
            .unwrap(),
    );
    let secrets = lab.file("bmc-secrets.yaml");
    write_secrets(&secrets, &spec.default_secrets());
    let sim = Bmc::start(&lab.file("bmc"), spec, Some(&lab.ns)).unwrap_or_else(|e| panic!("{e}"));
    let config = qemu::write_config(
        lab,
        &format!("{}operator: {OPERATOR}\n", qemu::install_config(&secrets)),
    );
    let console = Console::start(lab, mayu, &config);
    let api = qemu::connect(lab).await;
    console
        .until(lab, "the empty console", SCREEN_TIMEOUT, |s| {
            s.contains("No machines yet")
        })
        .await;

    // Racked and powered on by hand at its BMC: it registers, installs, reports in from its
    // disk and powers itself off.
    sim.ipmitool(Some(&lab.ns), &["chassis", "power", "on"])
        .unwrap();
    let first = api.installed(lab, &MACHINE, 0, INSTALL_TIMEOUT).await;
    assert!(
        eventually(Duration::from_secs(120), || sim.vm_pid().is_none()).await,
        "the installed system did not power off"
    );
    let before = boots(&api, &id).await;
    let (last_before, _) = before.last().cloned().unwrap();

    // The operator gives mayu the machine's BMC (`mayuctl set ID ipmi-addr ADDR`).
    let token = fs::read_to_string(lab.file("tokens.json.admin")).unwrap();
    let resp = api
        .http
        .patch(format!("{}/api/v1/machines/{id}", qemu::API))
        .bearer_auth(token.trim())
        .json(&json!({"ipmi_addr": BMC_ADDR}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    console
        .until(
            lab,
            "the machine running in the table, selected",
            SCREEN_TIMEOUT,
            |s| row(s, &id).is_some_and(|r| r.contains("running") && r.contains('▶')),
        )
        .await;

    // p, "reinstall now" (the last action), Enter; the question names the machine; y.
    console.tmux.keys(&["p"]);
    console
        .until(lab, "the power picker", SCREEN_TIMEOUT, |s| {
            s.contains("reinstall now: network boot next, then cycle")
        })
        .await;
    console
        .tmux
        .keys(&["Down", "Down", "Down", "Down", "Enter"]);
    let question = console
        .until(lab, "the reinstall question", SCREEN_TIMEOUT, |s| {
            s.contains(&format!("Reinstall {id}?"))
        })
        .await;
    assert!(
        question.contains(&format!(
            "reinstall now: network boot next, then cycle: {id}."
        )),
        "{question}"
    );
    assert_eq!(sim.vm_pid(), None, "the machine is off before the key");
    let pressed = api
        .events()
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap_or(first);
    console.tmux.keys(&["y"]);

    // The table follows at once: the machine is to be installed again.
    console
        .until(lab, "the machine configured again", SCREEN_TIMEOUT, |s| {
            row(s, &id).is_some_and(|r| r.contains("configured") || r.contains("installing"))
        })
        .await;
    // The BMC powered it on: a QEMU process again.
    assert!(
        eventually(Duration::from_secs(30), || sim.vm_pid().is_some()).await,
        "the BMC started no machine\n{}",
        sim.log()
    );
    let journey = Journey {
        after: pressed,
        until_off: false,
        stuck: &qemu::STUCK,
        timeout: INSTALL_TIMEOUT,
    };
    qemu::journey(lab, &api, &MACHINE, &reinstall_journey(), &journey).await;

    let m = api.must_get(&format!("/api/v1/machines/{id}")).await;
    assert_eq!(str_of(&m, "state"), "running", "{m:#}");
    assert_eq!(m["reinstall"], Value::Bool(false), "{m:#}");
    assert_eq!(m["installed"], Value::Bool(true), "{m:#}");
    // In its timeline the reinstall is two new boots, each whole: the network boot that
    // installed, and the disk's that reported in.
    let after = boots(&api, &id).await;
    let has = |steps: &[(String, String)], kind: &str, detail: &str| {
        steps.iter().any(|(k, d)| k == kind && d.contains(detail))
    };
    let new: Vec<&(u64, Vec<(String, String)>)> =
        after.iter().filter(|(n, _)| *n > last_before).collect();
    let now = match new.as_slice() {
        [(install, i), (disk, d)] => {
            assert_eq!(
                (*install, *disk),
                (last_before + 1, last_before + 2),
                "{after:?}"
            );
            for (kind, detail) in [
                ("ipxe", "profile install script served"),
                ("kernel", "installer/vmlinuz"),
                ("initrd", "installer/initrd.img"),
                ("config", "metadata served"),
            ] {
                assert!(
                    has(i, kind, detail),
                    "no {kind} {detail} in boot {install}: {i:?}"
                );
            }
            assert!(has(d, "ipxe", "local disk"), "boot {disk}: {d:?}");
            assert!(has(d, "boot_complete", ""), "boot {disk}: {d:?}");
            *disk
        }
        _ => panic!("not two new boots after boot {last_before}: {after:?}"),
    };

    // The console shows the same: running again, and boot `now` in the detail pane. (Not
    // its PHASE column: the installed system's DHCPACK, logged by dnsmasq after a quiet
    // spell, can come after its boot-complete and show `dhcp` there.)
    console
        .until(lab, "the machine running again", SCREEN_TIMEOUT, |s| {
            row(s, &id).is_some_and(|r| r.contains("running"))
        })
        .await;
    console.tmux.keys(&["Enter"]);
    console
        .until(
            lab,
            "the new boot in the detail pane",
            SCREEN_TIMEOUT,
            |s| s.contains("boot timeline") && s.contains(&format!("boot {now} ")),
        )
        .await;
    drop(api);
    drop(console);
    drop(sim);
}

#[test]
fn reinstall_now_from_the_console_key() {
    let needs = Needs {
        test: TEST,
        tools: &[
            ("cpio", "cpio"),
            ("extlinux", "extlinux"),
            ("ipmi_sim", "openipmi"),
            ("ipmitool", "ipmitool"),
            ("tmux", "tmux"),
        ],
        files: &[
            ("/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu"),
            ("/usr/lib/syslinux/mbr/mbr.bin", "syslinux-common"),
        ],
        images: &["build-install-image.sh"],
    };
    let started = Instant::now();
    qemu::in_lab(
        &needs,
        || {
            let lab = Lab::create(TEST, format!("mayu-qp-{}", std::process::id()), &["tap0"])?;
            lab.address(BMC_ADDR)?;
            Ok(lab)
        },
        |lab, mayu| Box::pin(scenario(lab, mayu)),
    );
    eprintln!("{TEST}: {:.0?}", started.elapsed());
}
