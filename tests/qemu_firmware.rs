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
//! Prerequisites, `CI=true` and the environment: `tests/support/qemu.rs`.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use support::qemu::{
    self, enter_namespace, str_of, tail, Api, Guest, Lab, Needs, ADDR, BOOT_PORT, OVMF_CODE, TCG,
};

const TEST: &str = "qemu_firmware";
const IPXE: &str = "/usr/lib/ipxe";
/// The client namespace's address (outside the DHCP range) for TFTP and HTTP fetches.
const CLIENT_ADDR: &str = "10.77.0.2";
const CLIENT_MAC: &str = "52:54:00:77:02:02";
/// The other DHCP server in proxy mode.
const DHCPD_ADDR: &str = "10.77.0.254";
/// Bounds that only stop a hung run: firmware → iPXE → registration takes ~20 s on an idle
/// core under software emulation.
const MACHINE_TIMEOUT: Duration = Duration::from_secs(300);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// At most two QEMU machines at once on this 2-core budget: the tests take turns.
static MACHINES: Mutex<()> = Mutex::new(());

/// The lab: the server namespace (the bridge, mayu, the machines' taps), `client` (a veth on
/// the bridge for the DHCP/TFTP/HTTP clients) and, in proxy mode, `dhcpd` (the other DHCP
/// server).
fn create_lab(tag: &str, with_dhcpd: bool) -> Result<Lab, String> {
    let ns = format!("mayu-fw-{}-{tag}", std::process::id());
    let mut lab = Lab::create(TEST, ns, &["tap0", "tap1"])?;
    let client = lab.add_namespace("client")?;
    lab.veth("vc0", &client, CLIENT_ADDR, Some(CLIENT_MAC))?;
    if with_dhcpd {
        let dhcpd = lab.add_namespace("dhcpd")?;
        lab.veth("vd0", &dhcpd, DHCPD_ADDR, None)?;
    }
    Ok(lab)
}

/// Runs `argv` in the client namespace; its output (stdout + stderr) and success.
async fn client(lab: &Lab, argv: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        CLIENT_TIMEOUT,
        tokio::process::Command::new("ip")
            .args(["netns", "exec", &lab.namespace("client")])
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
async fn udhcpc(lab: &Lab, extra: &[&str]) -> (bool, String) {
    let script = lab.file("udhcpc.sh");
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
    client(lab, &argv).await
}

/// `scripts/lab-config.yaml` with its paths moved into the lab folder (templates and images
/// stay the repository's) and its DHCP mode set to `mode`. Every rewrite must hit, so a change
/// of the lab config's shape fails here rather than testing something else.
fn lab_config(lab: &Lab, mode: &str) -> String {
    let repo = qemu::repo();
    let source = repo.join("scripts/lab-config.yaml");
    let text = fs::read_to_string(&source).expect("scripts/lab-config.yaml");
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
    guest: Guest,
    /// OVMF with its PXE clients off: only UEFI HTTP boot is left.
    http_boot: bool,
}

const PXE_VM: Vm = Vm {
    guest: Guest {
        name: "ovmf-pxe",
        serial: "MAYU-FW-PXE",
        mac: "52:54:00:77:02:10",
        tap: "tap0",
    },
    http_boot: false,
};
const HTTP_VM: Vm = Vm {
    guest: Guest {
        name: "ovmf-http",
        serial: "MAYU-FW-HTTP",
        mac: "52:54:00:77:02:11",
        tap: "tap1",
    },
    http_boot: true,
};

/// A UEFI machine whose NIC has no option ROM (`romfile=`): OVMF's own network stack boots it.
fn start_vm(lab: &Lab, vm: &Vm) -> Result<(), String> {
    let g = &vm.guest;
    let mut args = g.qemu(lab, &TCG, 256, "qemu-firmware", ",romfile=");
    args.push("-no-reboot".into());
    args.extend(g.ovmf(lab)?);
    if vm.http_boot {
        // OVMF then offers only its "UEFI HTTPv4/v6" boot options for the NIC.
        for knob in ["IPv4PXESupport", "IPv6PXESupport"] {
            args.push("-fw_cfg".into());
            args.push(format!("name=opt/org.tianocore/{knob},string=n"));
        }
    }
    g.start(lab, &args)
}

fn is_dhcp_of(e: &Value, mac: &str) -> bool {
    str_of(e, "type") == "dhcp" && str_of(e, "mac").eq_ignore_ascii_case(mac)
}

/// Fills the TFTP root with the repository's own script, starts mayu in the server namespace
/// with the lab config in DHCP mode `mode`.
async fn start_mayu(lab: &Lab, mayu: &Path, mode: &str) -> Api {
    qemu::run(
        Command::new(qemu::repo().join("scripts/fill-tftproot.sh")).arg(lab.file("tftproot")),
    )
    .expect("scripts/fill-tftproot.sh");
    qemu::start_mayu(lab, mayu, &lab_config(lab, mode)).await
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
        let ns = lab.namespace("client");
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
        let (ok, out) = udhcpc(lab, &pxe).await;
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
    let (ok, out) = client(
        lab,
        &[
            "tftp",
            "-m",
            "binary",
            ADDR,
            "-c",
            "get",
            "undionly.kpxe",
            &got.to_string_lossy(),
        ],
    )
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
    let (ok, out) = udhcpc(
        lab,
        &[
            "-V",
            "HTTPClient:Arch:00016",
            "-x",
            "0x5d:0010",
            "-O",
            "bootfile",
        ],
    )
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
    let (ok, out) = client(
        lab,
        &["busybox", "wget", "-q", "-O", &got.to_string_lossy(), &url],
    )
    .await;
    assert!(ok, "GET {url} failed:\n{out}");
    same_bytes(&got, &format!("{IPXE}/ipxe.efi"));
    // Anything else in the TFTP root (or outside it) is not served.
    let (ok, _) = client(
        lab,
        &[
            "busybox",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            &format!("http://{ADDR}:{BOOT_PORT}/boot/..%2Fconfig.yaml"),
        ],
    )
    .await;
    assert!(!ok, "the boot program route served a file outside its list");
    url
}

/// The machine's address as its DHCPACK gave it.
async fn acked_ip(lab: &Lab, api: &Api, vm: &Guest) -> String {
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
async fn registered(lab: &Lab, api: &Api, vm: &Guest) {
    let id = vm.id();
    let found = qemu::try_wait_for(
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
            tail(&vm.serial_log(lab), 40)
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
fn ipxe_asked_again(api: &Api, vm: &Guest) {
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
    let pxe_ip = acked_ip(lab, &api, &PXE_VM.guest).await;
    api.event(lab, "the PXE machine's offer", MACHINE_TIMEOUT, |e| {
        is_dhcp_of(e, PXE_VM.guest.mac)
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
    registered(lab, &api, &PXE_VM.guest).await;
    ipxe_asked_again(&api, &PXE_VM.guest);

    // UEFI HTTP boot: DHCP (HTTPClient, arch 16) → iPXE over HTTP → registers; no TFTP.
    let http_ip = acked_ip(lab, &api, &HTTP_VM.guest).await;
    // The firmware lists option 67 in its request: the URL goes out as that option.
    api.event(lab, "the HTTP boot machine's offer", MACHINE_TIMEOUT, |e| {
        is_dhcp_of(e, HTTP_VM.guest.mac)
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
    registered(lab, &api, &HTTP_VM.guest).await;
    ipxe_asked_again(&api, &HTTP_VM.guest);

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
    let dhcpd = lab.namespace("dhcpd");
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
    lab.spawn_in(
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
            is_dhcp_of(e, PXE_VM.guest.mac)
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
    registered(lab, &api, &PXE_VM.guest).await;
    ipxe_asked_again(&api, &PXE_VM.guest);
    assert!(
        api.events()
            .iter()
            .filter(|e| str_of(e, "type") == "dhcp")
            .all(|e| str_of(e, "ip").is_empty() || str_of(e, "message") == "PXE"),
        "a proxy hands out no addresses:\n{}",
        api.summaries()
    );
}

/// Sets up a lab, runs `scenario` on a thread inside its server namespace, cleans up.
fn in_lab(tag: &str, with_dhcpd: bool, scenario: qemu::Scenario) {
    let _turn = MACHINES.lock().unwrap_or_else(|p| p.into_inner());
    let needs = Needs {
        test: TEST,
        tools: &[("tftp", "tftp-hpa")],
        files: &[
            (OVMF_CODE, "ovmf"),
            ("/usr/lib/ipxe/ipxe.efi", "ipxe"),
            ("/usr/lib/ipxe/undionly.kpxe", "ipxe"),
        ],
        images: &[],
    };
    qemu::in_lab(&needs, || create_lab(tag, with_dhcpd), scenario);
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
