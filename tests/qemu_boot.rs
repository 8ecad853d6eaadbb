//! Real network boots: a BIOS (SeaBIOS) and a UEFI (OVMF) QEMU machine PXE-boot through mayu's
//! supervised dnsmasq child and boot HTTP, run the discovery image, register with facts, are
//! assigned by quota (`first` holds one, so the second machine lands in `second`), boot their
//! profile's test image and report boot-complete.
//!
//! Everything runs in a network namespace this test creates (a bridge with no uplink, one tap
//! per machine); mayu itself runs inside it (`ip netns exec`), and so does the thread that talks
//! to mayu's API, which listens on the namespace's loopback.
//!
//! The images are built by `scripts/build-discovery.sh` and `scripts/build-test-image.sh` (fast
//! when up to date). Prerequisites, `CI=true` and the environment: `tests/support/qemu.rs`.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::qemu::{
    self, boot_step, step, str_of, tail, Api, Guest, Journey, Lab, Needs, OVMF_CODE, START_TIMEOUT,
};

const TEST: &str = "qemu_boot";
/// Guest RAM in MiB; discovery must report exactly this.
const GUEST_MIB: u64 = 256;
/// One machine's whole journey (two network boots) under software emulation takes ~30–60 s
/// on an idle core; this bound only stops a hung run.
const MACHINE_TIMEOUT: Duration = Duration::from_secs(420);

fn config_text(lab: &Lab) -> String {
    // The test image is booted by the same generic kernel+initrd template as discovery: both
    // read mayu.url, mayu.id and mayu.token from the kernel command line.
    let profile = |name: &str, quota: &str, image: &str| {
        format!(
            "  - name: {name}\n{quota}    image: {image}\n    kernel_args: \"console=ttyS0 panic=1\"\n    templates: {{ ipxe: discovery.ipxe }}\n"
        )
    };
    let quota = "    quantity: 1\n    selector: { memory_gib: \">=0.1\" }\n";
    qemu::config_head()
        + "default_profile: discovery\nprofiles:\n"
        + &profile("first", quota, "test")
        + &profile("second", quota, "test")
        + &profile("discovery", "", "discovery")
        + &format!("# lab {}\n", lab.ns)
}

struct Vm {
    guest: Guest,
    uefi: bool,
    disks: usize,
}

const BIOS: Vm = Vm {
    guest: Guest {
        name: "bios",
        serial: "MAYU-QT-BIOS",
        mac: "52:54:00:77:01:01",
        tap: "tap0",
    },
    uefi: false,
    disks: 2,
};
const UEFI: Vm = Vm {
    guest: Guest {
        name: "uefi",
        serial: "MAYU-QT-UEFI",
        mac: "52:54:00:77:01:02",
        tap: "tap1",
    },
    uefi: true,
    disks: 1,
};

fn start_vm(lab: &Lab, vm: &Vm) -> Result<(), String> {
    let g = &vm.guest;
    let mut args = g.qemu(lab, &qemu::accel(), GUEST_MIB, "qemu-boot", "");
    for d in 0..vm.disks {
        args.push("-blockdev".into());
        args.push(format!(
            "driver=null-co,node-name=d{d},size={},read-zeroes=on",
            (d as u64 + 1) << 30
        ));
        args.push("-device".into());
        args.push(format!("virtio-blk-pci,drive=d{d}"));
    }
    args.extend(if vm.uefi {
        g.ovmf(lab)?
    } else {
        g.seabios(lab)?
    });
    // No -no-reboot: discovery reboots, and the firmware PXE-boots the assigned profile.
    g.start(lab, &args)
}

fn boot_journey(profile: &'static str) -> Vec<qemu::Step> {
    let assigned = format!("assigned to {profile}");
    vec![
        step("dhcp", |e| str_of(e, "type") == "dhcp"),
        step("machine_added", |e| str_of(e, "type") == "machine_added"),
        // The discovery boot ...
        boot_step("ipxe", "discovery"),
        boot_step("kernel", "discovery/vmlinuz"),
        boot_step("initrd", "discovery/initrd.img"),
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
        boot_step("ipxe", profile),
        boot_step("kernel", "test/vmlinuz"),
        boot_step("initrd", "test/initrd.img"),
        step("machine_changed: boot complete", |e| {
            str_of(e, "type") == "machine_changed" && str_of(e, "change") == "boot complete"
        }),
        boot_step("boot_complete", ""),
    ]
}

async fn boot_and_check(lab: &Lab, api: &Api, vm: &Vm, profile: &'static str) {
    let g = &vm.guest;
    let id = g.id();
    let until_complete = Journey {
        after: 0,
        until_off: false,
        stuck: &[],
        timeout: MACHINE_TIMEOUT,
    };
    qemu::journey(lab, api, g, &boot_journey(profile), &until_complete).await;

    // The machine powers off after reporting boot-complete.
    qemu::wait_for(
        lab,
        &format!("qemu {} to power off", g.name),
        START_TIMEOUT,
        async || lab.exited(g.name),
    )
    .await;
    let serial = fs::read_to_string(g.serial_log(lab)).unwrap_or_default();
    assert!(
        serial.contains(&format!("MAYU-TEST-BOOT-COMPLETE id={id}")),
        "no boot-complete marker on {}'s serial console:\n{}",
        g.name,
        tail(&g.serial_log(lab), 40)
    );
    assert!(
        serial.contains("MAYU-DISCOVERY-REBOOT"),
        "{} never ran discovery:\n{}",
        g.name,
        tail(&g.serial_log(lab), 40)
    );

    // Final state, profile and facts through the API.
    let m = api.must_get(&format!("/api/v1/machines/{id}")).await;
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
    assert!(nic_mac.eq_ignore_ascii_case(g.mac), "{m:#}");
    assert_eq!(
        facts.pointer("/nics/0/link"),
        Some(&Value::Bool(true)),
        "{m:#}"
    );

    // The git audit trail: every step is a commit by the machine itself, oldest first.
    let history = api
        .must_get(&format!("/api/v1/machines/{id}/history"))
        .await;
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
    let log = qemu::git_log(lab, &id, &["--format=%an %s%n%b"]);
    for want in &expected {
        assert!(
            log.contains(want.as_str()),
            "git log lacks `{want}`:\n{log}"
        );
    }
}

async fn scenario(lab: &Lab, mayu: &Path) {
    let tftp = lab.file("tftproot");
    fs::create_dir_all(&tftp).expect("tftproot");
    for f in ["undionly.kpxe", "ipxe.efi", "snponly.efi"] {
        let src = Path::new("/usr/lib/ipxe").join(f);
        if src.is_file() {
            fs::copy(&src, tftp.join(f)).expect("copy boot program");
        }
    }
    let api = qemu::start_mayu(lab, mayu, &config_text(lab)).await;

    // BIOS first; the UEFI machine starts once the first has its profile, so it finds `first`
    // full and lands in `second`.
    start_vm(lab, &BIOS).expect("start the BIOS machine");
    let bios_id = BIOS.guest.id();
    qemu::wait_for(
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
            (BIOS.guest.id(), "first".to_string()),
            (UEFI.guest.id(), "second".to_string())
        ]
    );
}

#[test]
fn bios_and_uefi_machines_network_boot_through_mayu() {
    let needs = Needs {
        test: TEST,
        tools: &[("cpio", "cpio")],
        files: &[
            (OVMF_CODE, "ovmf"),
            ("/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu"),
            ("/usr/lib/ipxe/ipxe.efi", "ipxe"),
        ],
        images: &["build-discovery.sh", "build-test-image.sh"],
    };
    qemu::in_lab(
        &needs,
        || {
            Lab::create(
                TEST,
                format!("mayu-qt-{}", std::process::id()),
                &["tap0", "tap1"],
            )
        },
        |lab, mayu| Box::pin(scenario(lab, mayu)),
    );
}
