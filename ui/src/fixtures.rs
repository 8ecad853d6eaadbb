//! Fixed console states for snapshot tests and screenshots: a rack-and-stack session in
//! progress at a fixed instant, so every rendering of it is byte-for-byte stable.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use mayu::engine::stalls;
use mayu::engine::tally::{self, Tally};
use mayu::engine::{ProfileStatus, Snapshot};
use mayu::events::{Event, EventKind};
use mayu::inventory::HistoryEntry;
use mayu::lease::{Lease, ServiceProblem, ServiceState};
use mayu::machine::{
    AssignedBy, Disk, Facts, IdError, Mac, Machine, MachineId, Phase, Rack, State,
};
use mayu::timeline::{Step, StepKind, Timeline};
use time::macros::datetime;
use time::OffsetDateTime;

use crate::action::{Action, Page};
use crate::app::{update, App, Dialog, Setup};

/// The fixtures' "now".
pub const NOW: OffsetDateTime = datetime!(2026-11-25 10:00:00 UTC);

fn ago(secs: i64) -> OffsetDateTime {
    NOW - time::Duration::seconds(secs)
}

fn id(s: &str) -> Result<MachineId, IdError> {
    s.parse()
}

fn mac(n: u8) -> Result<Mac, IdError> {
    format!("52:54:00:aa:00:{n:02x}").parse()
}

pub fn setup() -> Setup {
    Setup {
        operator: "alice".into(),
        boot_addr: "10.77.0.1:4081".into(),
        api_addr: "127.0.0.1:4080".into(),
        dhcp_mode: "full".into(),
        interface: "mayu0".into(),
        templates_dir: "templates".into(),
    }
}

/// The boot the engine would have recorded for `m`'s phases: one step each, in time order.
fn timeline_of(m: &Machine) -> Timeline {
    let mut reached: Vec<(Phase, OffsetDateTime)> = Phase::ALL
        .iter()
        .filter_map(|p| m.phases.get(*p).map(|t| (*p, t)))
        .collect();
    reached.sort_by_key(|(p, t)| (*t, *p));
    let mut t = Timeline::default();
    for (phase, at) in reached {
        let Some(kind) = StepKind::of(phase) else {
            continue;
        };
        let detail = match kind {
            StepKind::Dhcp => "DHCPACK",
            StepKind::Ipxe => "profile script served",
            StepKind::Kernel => "vmlinuz",
            StepKind::Initrd => "initrd",
            StepKind::Config => "ignition",
            _ => "",
        };
        t.record(Step::new(at, kind, detail).firmware(kind == StepKind::Dhcp));
    }
    t
}

/// A snapshot as the engine gives it: fill levels counted from the machines, its way.
fn snapshot(machines: Vec<Machine>) -> Snapshot {
    let mut t = Tally::default();
    for m in &machines {
        t.count(m, true);
    }
    let mut profiles = profiles();
    for p in &mut profiles {
        tally::fill(p, &t);
    }
    let machines_timelines = machines
        .iter()
        .map(|m| (m.id.clone(), timeline_of(m)))
        .collect();
    Snapshot {
        machines,
        profiles,
        waiting: t.waiting,
        ignored: Vec::new(),
        timelines: mayu::engine::Timelines {
            machines: machines_timelines,
            unregistered: Default::default(),
        },
    }
}

fn profiles() -> Vec<ProfileStatus> {
    let p = |name: &str, quantity: Option<u32>, tags: &[&str], image: &str, default: bool| {
        ProfileStatus {
            name: name.into(),
            quantity,
            assigned: 0,
            running: 0,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            image: image.into(),
            fill: None,
            is_default: default,
        }
    };
    vec![
        p("control-plane", Some(3), &["etcd"], "flatcar", false),
        p("worker", Some(10), &["worker"], "flatcar", false),
        p("discovery", None, &[], "discovery", true),
    ]
}

struct Spec {
    id: &'static str,
    n: u8,
    profile: Option<&'static str>,
    by_operator: bool,
    state: State,
    /// seconds before NOW each phase was reached, in boot order.
    phases: &'static [(Phase, i64)],
}

const SPECS: &[Spec] = &[
    Spec {
        id: "r1-u01",
        n: 1,
        profile: Some("control-plane"),
        by_operator: false,
        state: State::Running,
        phases: &[
            (Phase::FirstSeen, 1900),
            (Phase::Dhcp, 1896),
            (Phase::Ipxe, 1893),
            (Phase::Kernel, 1890),
            (Phase::Initrd, 1884),
            (Phase::Config, 1850),
            (Phase::BootComplete, 1700),
        ],
    },
    Spec {
        id: "r1-u02",
        n: 2,
        profile: Some("control-plane"),
        by_operator: false,
        state: State::Running,
        phases: &[
            (Phase::FirstSeen, 1800),
            (Phase::Dhcp, 1797),
            (Phase::Ipxe, 1795),
            (Phase::Kernel, 1790),
            (Phase::Initrd, 1786),
            (Phase::Config, 1740),
            (Phase::BootComplete, 1610),
        ],
    },
    Spec {
        id: "r1-u03",
        n: 3,
        profile: Some("control-plane"),
        by_operator: true,
        state: State::Installing,
        phases: &[
            (Phase::FirstSeen, 400),
            (Phase::Dhcp, 396),
            (Phase::Ipxe, 392),
            (Phase::Kernel, 70),
        ],
    },
    Spec {
        id: "r1-u04",
        n: 4,
        profile: Some("worker"),
        by_operator: true,
        state: State::Installing,
        phases: &[
            (Phase::FirstSeen, 300),
            (Phase::Dhcp, 296),
            (Phase::Ipxe, 293),
            (Phase::Kernel, 120),
            (Phase::Initrd, 112),
            (Phase::Config, 31),
        ],
    },
    Spec {
        id: "r1-u05",
        n: 5,
        profile: Some("worker"),
        by_operator: false,
        state: State::Configured,
        phases: &[(Phase::FirstSeen, 60), (Phase::Dhcp, 57), (Phase::Ipxe, 5)],
    },
    Spec {
        id: "r1-u06",
        n: 6,
        profile: Some("worker"),
        by_operator: false,
        state: State::Installing,
        phases: &[
            (Phase::FirstSeen, 1000),
            (Phase::Dhcp, 996),
            (Phase::Ipxe, 990),
            (Phase::Kernel, 900),
            (Phase::Initrd, 842),
        ],
    },
    Spec {
        id: "r1-u07",
        n: 7,
        profile: Some("worker"),
        by_operator: false,
        state: State::Running,
        phases: &[
            (Phase::FirstSeen, 2400),
            (Phase::Dhcp, 2396),
            (Phase::Ipxe, 2390),
            (Phase::Kernel, 2380),
            (Phase::Initrd, 2370),
            (Phase::Config, 2330),
            (Phase::BootComplete, 2200),
        ],
    },
    Spec {
        id: "r1-u08",
        n: 8,
        profile: Some("worker"),
        by_operator: true,
        state: State::Configured,
        phases: &[
            (Phase::FirstSeen, 150),
            (Phase::Dhcp, 147),
            (Phase::Ipxe, 140),
        ],
    },
    Spec {
        id: "r2-u01",
        n: 11,
        profile: Some("discovery"),
        by_operator: false,
        state: State::Installing,
        phases: &[
            (Phase::FirstSeen, 200),
            (Phase::Dhcp, 197),
            (Phase::Ipxe, 190),
            (Phase::Kernel, 185),
            (Phase::Initrd, 180),
        ],
    },
    Spec {
        id: "r2-u02",
        n: 12,
        profile: Some("discovery"),
        by_operator: false,
        state: State::Running,
        phases: &[
            (Phase::FirstSeen, 900),
            (Phase::Dhcp, 897),
            (Phase::Ipxe, 890),
            (Phase::Kernel, 880),
            (Phase::Initrd, 870),
            (Phase::Config, 820),
            (Phase::BootComplete, 760),
        ],
    },
    Spec {
        id: "4c4c4544-0042-3510-8052-b4c04f4b4e32",
        n: 13,
        profile: None,
        by_operator: false,
        state: State::Waiting,
        phases: &[(Phase::FirstSeen, 75), (Phase::Dhcp, 72), (Phase::Ipxe, 68)],
    },
];

fn machine(s: &Spec) -> Result<Machine, IdError> {
    let mut m = Machine::new(id(s.id)?, String::new(), ago(s.phases[0].1));
    m.macs = vec![mac(s.n)?];
    if s.n == 4 {
        m.macs.push("52:54:00:bb:00:04".parse()?);
    }
    m.ip = Some(Ipv4Addr::new(10, 77, 0, 100 + s.n));
    m.arch = Some("x86_64".into());
    m.serial = s.id.starts_with('r').then(|| s.id.to_uppercase());
    m.profile = s.profile.map(str::to_string);
    m.assigned_by = s.profile.map(|_| {
        if s.by_operator {
            AssignedBy::Operator("alice".into())
        } else {
            AssignedBy::Rule
        }
    });
    m.pinned = s.by_operator;
    m.state = s.state;
    for (p, secs) in s.phases {
        m.phases.set(*p, ago(*secs));
    }
    // Stalls are the engine's to decide: its rule, with control-plane's `stall_after: 20m`.
    let after = match s.profile {
        Some("control-plane") => Duration::from_secs(20 * 60),
        _ => stalls::DEFAULT_AFTER,
    };
    m.stall = stalls::due(&m, NOW, after);
    if s.id.starts_with("r1") {
        m.ipmi_addr = Some(format!("10.77.0.{}", 20 + s.n));
        m.rack = Some(Rack {
            rack: "r1".into(),
            unit: Some(u32::from(s.n) * 2),
        });
        m.hostname = Some(match s.profile {
            Some("control-plane") => format!("cp-{:02}", s.n),
            _ => format!("node-{:02}", s.n),
        });
    }
    if s.id.starts_with("r2") {
        m.rack = Some(Rack {
            rack: "r2".into(),
            unit: None,
        });
    }
    if s.n == 4 {
        m.hostname = Some("worker-04".into());
        m.notes = "swapped PSU B on 11-24".into();
        m.overrides = BTreeMap::from([(
            "role".to_string(),
            serde_json::Value::String("storage".into()),
        )]);
        m.ipmi_addr = Some("10.78.0.14".into());
        m.facts = Facts {
            cpus: Some(32),
            cpu_model: Some("EPYC 7302P".into()),
            memory_bytes: Some(128 << 30),
            disks: vec![
                Disk {
                    name: "nvme0n1".into(),
                    size_bytes: 960 << 30,
                    model: None,
                },
                Disk {
                    name: "sda".into(),
                    size_bytes: 4000 << 30,
                    model: None,
                },
            ],
            nics: Vec::new(),
            vendor: Some("Supermicro".into()),
            product: Some("AS-1114S".into()),
        };
    }
    Ok(m)
}

fn event(seq: u64, secs_ago: i64, kind: EventKind) -> Arc<Event> {
    Arc::new(Event {
        seq,
        at: ago(secs_ago),
        kind,
    })
}

/// A status by its name, as the API spells it.
fn status_of(name: &str) -> mayu::lease::ServiceStatus {
    serde_json::from_value(serde_json::Value::String(name.into()))
        .unwrap_or_else(|_| panic!("no service status `{name}`"))
}

fn service(name: &str, status: &str, restarts: u32, detail: &str) -> ServiceState {
    ServiceState {
        name: name.into(),
        status: status_of(status),
        restarts,
        detail: detail.into(),
        since: ago(3000),
        problem: None,
    }
}

fn history() -> Vec<HistoryEntry> {
    let h = |secs: i64, author: &str, message: &str| HistoryEntry {
        commit: format!("{:040x}", secs),
        author: author.into(),
        time: ago(secs),
        message: format!("r1-u04: {message}"),
        fields: Vec::new(),
    };
    vec![
        h(40, "alice", "override role=\"storage\""),
        h(200, "alice", "hostname worker-04, rack r1 unit 8, notes"),
        h(280, "alice", "assigned to worker"),
        h(300, "r1-u04", "registered"),
    ]
}

/// `count` new machines `m00000`, `m00001`, … (a rack-scale table), all waiting.
pub fn crowd(count: u32) -> Result<App, IdError> {
    let machines = (0..count)
        .map(|i| Ok(Machine::new(id(&format!("m{i:05}"))?, String::new(), NOW)))
        .collect::<Result<Vec<_>, IdError>>()?;
    Ok(App::new(
        setup(),
        Snapshot {
            machines,
            profiles: Vec::new(),
            waiting: count,
            ignored: Vec::new(),
            timelines: Default::default(),
        },
    ))
}

/// The busy session: a dozen machines, one new, one stalled, a full profile.
pub fn session() -> Result<App, IdError> {
    let machines = SPECS.iter().map(machine).collect::<Result<Vec<_>, _>>()?;
    let mut app = App::new(setup(), snapshot(machines));
    app.now = NOW;
    app.set_services(vec![
        service("boot-http", "running", 0, ""),
        service("api", "running", 0, ""),
        service("dnsmasq", "running", 1, ""),
        service("templates", "running", 0, "4 templates"),
    ]);
    let mut leases = Vec::new();
    for s in SPECS {
        leases.push(Lease {
            mac: mac(s.n)?,
            ip: Ipv4Addr::new(10, 77, 0, 100 + s.n),
            hostname: (s.n == 4).then(|| "worker-04".into()),
            expires: Some(ago(s.phases[0].1 % 600 - 3600)),
            client_id: None,
            machine: Some(id(s.id)?),
        });
    }
    leases.push(Lease {
        mac: "0c:c4:7a:10:20:30".parse()?,
        ip: Ipv4Addr::new(10, 77, 0, 180),
        hostname: Some("bmc-r3".into()),
        expires: None,
        client_id: None,
        machine: None,
    });
    app.set_leases(leases);
    // the BMC's own DHCP: seen, never registered
    let mut bmc = Timeline::default();
    bmc.record(Step::new(ago(900), StepKind::Dhcp, "DHCPACK 10.77.0.180"));
    app.unregistered.insert("0c:c4:7a:10:20:30".parse()?, bmc);
    // known_only keeps a new server out until someone enrols it
    app.ignored = vec![mayu::engine::IgnoredClient {
        mac: "0c:c4:7a:aa:bb:01".parse()?,
        first_seen: ago(600),
        last_seen: ago(20),
        count: 9,
        vendor_class: Some("PXEClient:Arch:00007:UNDI:003016".into()),
        interface: Some("mayu0".into()),
    }];
    // what the BMCs of rack r1 last said
    for s in SPECS.iter().filter(|s| s.id.starts_with("r1")) {
        let state = match s.n {
            6 => mayu::power::PowerState::Unreachable,
            8 => mayu::power::PowerState::Off,
            _ => mayu::power::PowerState::On,
        };
        app.power.insert(
            id(s.id)?,
            mayu::power::PowerStatus {
                state,
                checked_at: ago(15),
                error: (state == mayu::power::PowerState::Unreachable)
                    .then(|| "no answer from 10.77.0.26:623 in 5 s".into()),
            },
        );
    }
    let newcomer = {
        let mut m = Machine::new(id("52-54-00-aa-00-09")?, String::new(), ago(3));
        m.macs = vec![mac(9)?];
        m.arch = Some("x86_64".into());
        m
    };
    let r104 = machine(&SPECS[3])?;
    let events = vec![
        event(
            101,
            842,
            EventKind::BootStep {
                id: Some(id("r1-u06")?),
                phase: Phase::Initrd,
                detail: "flatcar initrd".into(),
                bytes: Some(187_000_000),
                duration_ms: Some(9_400),
                profile: None,
            },
        ),
        event(
            102,
            300,
            EventKind::MachineAdded {
                machine: Box::new(machine(&SPECS[3])?),
                actor: "r1-u04".into(),
            },
        ),
        event(
            103,
            200,
            EventKind::BootStep {
                id: Some(id("r2-u01")?),
                phase: Phase::Kernel,
                detail: "discovery kernel".into(),
                bytes: Some(9_800_000),
                duration_ms: Some(640),
                profile: None,
            },
        ),
        event(
            104,
            150,
            EventKind::Dhcp {
                message: "DHCPACK".into(),
                mac: Some(mac(8)?),
                ip: Some("10.77.0.108".into()),
                hostname: None,
                detail: "PXEClient".into(),
            },
        ),
        event(
            105,
            140,
            EventKind::MachineChanged {
                machine: Box::new(machine(&SPECS[7])?),
                change: "assigned to worker".into(),
                actor: "alice".into(),
            },
        ),
        event(
            106,
            75,
            EventKind::Tftp {
                file: "undionly.kpxe".into(),
                client: "10.77.0.113".into(),
                machine: None,
                ok: true,
                detail: String::new(),
            },
        ),
        event(
            107,
            70,
            EventKind::BootStep {
                id: Some(id("r1-u03")?),
                phase: Phase::Kernel,
                detail: "flatcar kernel".into(),
                bytes: Some(58_000_000),
                duration_ms: Some(2_100),
                profile: None,
            },
        ),
        event(
            108,
            68,
            EventKind::MachineChanged {
                machine: Box::new(machine(&SPECS[10])?),
                change: "held for an operator".into(),
                actor: "4c4c4544-0042-3510-8052-b4c04f4b4e32".into(),
            },
        ),
        event(109, 60, EventKind::Leases { count: 12 }),
        event(
            110,
            40,
            EventKind::MachineChanged {
                machine: Box::new(r104),
                change: "override role=\"storage\"".into(),
                actor: "alice".into(),
            },
        ),
        event(
            111,
            31,
            EventKind::BootStep {
                id: Some(id("r1-u04")?),
                phase: Phase::Config,
                detail: "ignition worker.yaml".into(),
                bytes: Some(4_210),
                duration_ms: Some(3),
                profile: None,
            },
        ),
        event(
            112,
            20,
            EventKind::Log {
                level: mayu::events::LogLevel::Warn,
                message: "dnsmasq restarted after exit status 2".into(),
            },
        ),
        event(
            113,
            5,
            EventKind::BootStep {
                id: Some(id("r1-u05")?),
                phase: Phase::Ipxe,
                detail: "worker script".into(),
                bytes: None,
                duration_ms: None,
                profile: None,
            },
        ),
        event(
            114,
            3,
            EventKind::MachineAdded {
                machine: Box::new(newcomer),
                actor: "52-54-00-aa-00-09".into(),
            },
        ),
    ];
    for ev in events {
        // Leases events ask the runner to re-read the table; the fixture already has it.
        let _ = update(&mut app, Action::Bus(ev));
    }
    app.select(&id("r1-u04")?);
    app.history = Some((id("r1-u04")?, Ok(history())));
    Ok(app)
}

/// A fresh install: no machines, services up.
pub fn empty() -> Result<App, IdError> {
    let mut app = App::new(setup(), snapshot(Vec::new()));
    app.now = NOW;
    app.set_services(vec![
        service("boot-http", "running", 0, ""),
        service("api", "running", 0, ""),
        service("dnsmasq", "starting", 0, ""),
    ]);
    app.prepare();
    Ok(app)
}

/// The first minute on a fresh clone: the boot interface does not exist, so dnsmasq waits and
/// the header says why; a machine on another DHCP server polls while it is held.
pub fn first_minute() -> Result<App, IdError> {
    let mut app = App::new(setup(), snapshot(Vec::new()));
    app.now = NOW;
    let reason = ServiceProblem {
        code: "interface_missing".into(),
        reason: "interface mayu0 does not exist".into(),
        hint: "set network.interface, or try sudo scripts/lab.sh up".into(),
    };
    let svc = |name: &str, status: &str, detail: &str, problem: Option<ServiceProblem>| {
        EventKind::Service {
            name: name.into(),
            status: status_of(status),
            restarts: 0,
            detail: detail.into(),
            problem,
        }
    };
    let held = {
        let mut m = Machine::new(id("52-54-00-aa-00-09")?, String::new(), ago(60));
        m.macs = vec![mac(9)?];
        m.arch = Some("x86_64".into());
        m
    };
    let mut events = vec![
        event(1, 62, svc("boot-http", "running", "0.0.0.0:4081", None)),
        event(2, 62, svc("templates", "watching", "templates", None)),
        event(3, 62, svc("api", "running", "http://127.0.0.1:4080", None)),
        event(
            4,
            62,
            EventKind::Log {
                level: mayu::events::LogLevel::Warn,
                message: "boot programs missing from /home/alice/mayu/tftproot: undionly.kpxe (BIOS), ipxe.efi (UEFI x86-64), ipxe-arm64.efi (arm64); those clients cannot boot. Fill it with scripts/fill-tftproot.sh".into(),
            },
        ),
        event(
            5,
            62,
            svc(
                "dnsmasq",
                "waiting",
                "full on mayu0; missing boot programs: undionly.kpxe (BIOS), ipxe.efi (UEFI x86-64), ipxe-arm64.efi (arm64): interface mayu0 does not exist: set network.interface, or try sudo scripts/lab.sh up; also needs root for DHCP/TFTP ports; also TFTP root /home/alice/mayu/tftproot does not exist",
                Some(reason),
            ),
        ),
        event(
            6,
            60,
            EventKind::MachineAdded {
                machine: Box::new(held),
                actor: "52-54-00-aa-00-09".into(),
            },
        ),
    ];
    // a held machine asks again every 5 s: the engine announces the first poll and counts
    // the others in its timeline (one step with a count, not a screenful)
    let detail = "held for an operator, asks again in 5 s";
    events.push(event(
        7,
        60,
        EventKind::BootStep {
            id: Some(id("52-54-00-aa-00-09")?),
            phase: Phase::Ipxe,
            detail: detail.into(),
            bytes: None,
            duration_ms: None,
            profile: None,
        },
    ));
    for i in 0..12u64 {
        let secs = 60 - 5 * i as i64;
        events.push(event(
            8 + i,
            secs,
            EventKind::TimelineStep {
                id: Some(id("52-54-00-aa-00-09")?),
                mac: None,
                boot: 1,
                step: Step::new(ago(secs), StepKind::Ipxe, detail),
            },
        ));
    }
    // a machine with no boot program to fetch retries TFTP: one line with a count
    for i in 0..12u64 {
        events.push(event(
            20 + i,
            30 - 2 * i as i64,
            EventKind::Tftp {
                file: "undionly.kpxe".into(),
                client: "10.77.0.150".into(),
                machine: None,
                ok: false,
                detail: "file /home/alice/mayu/tftproot/undionly.kpxe not found".into(),
            },
        ));
    }
    for ev in events {
        let _ = update(&mut app, Action::Bus(ev));
    }
    app.prepare();
    Ok(app)
}

/// One named screen: the app state and the terminal size it is shown at.
pub struct Shot {
    pub name: &'static str,
    pub width: u16,
    pub height: u16,
    pub app: App,
}

/// Every page and dialog the snapshots and screenshots cover.
pub fn shots() -> Result<Vec<Shot>, IdError> {
    let shot = |name, width, height, app| Shot {
        name,
        width,
        height,
        app,
    };
    let with = |f: &dyn Fn(&mut App)| -> Result<App, IdError> {
        let mut app = session()?;
        f(&mut app);
        app.prepare();
        Ok(app)
    };
    let typing = |a: &mut App, text: &str| {
        for c in text.chars() {
            let _ = update(a, Action::Input(c));
        }
    };
    let waiting = id("4c4c4544-0042-3510-8052-b4c04f4b4e32")?;
    Ok(vec![
        shot("machines", 140, 36, session()?),
        shot("machines-80x24", 80, 24, session()?),
        shot("detail", 100, 32, with(&|a| a.page = Page::Detail)?),
        shot("leases", 100, 24, with(&|a| a.page = Page::Leases)?),
        shot("events", 100, 24, with(&|a| a.page = Page::Events)?),
        shot(
            "assign",
            100,
            30,
            with(&|a| {
                let _ = update(a, Action::StartAssign);
            })?,
        ),
        shot(
            "assign-full",
            100,
            30,
            with(&|a| {
                a.select(&waiting);
                let _ = update(a, Action::StartAssign);
                let _ = update(a, Action::Submit);
            })?,
        ),
        shot(
            "edit",
            100,
            30,
            with(&|a| {
                let _ = update(a, Action::StartEdit);
            })?,
        ),
        shot(
            "override",
            100,
            30,
            with(&|a| {
                let _ = update(a, Action::StartOverride);
                typing(a, "rack_position");
                let _ = update(a, Action::NextField);
                typing(a, "8");
            })?,
        ),
        shot(
            "help",
            100,
            30,
            with(&|a| a.dialog = Some(Dialog::Help(0)))?,
        ),
        shot(
            "help-80x24",
            80,
            24,
            with(&|a| {
                // scrolled to its end: the view stops there
                let _ = update(a, Action::Help);
                let _ = update(a, Action::PageDown);
                let _ = update(a, Action::PageDown);
            })?,
        ),
        shot(
            "filter",
            100,
            30,
            with(&|a| {
                let _ = update(a, Action::StartFilter);
                typing(a, "worker");
            })?,
        ),
        shot("machines-wide", 220, 36, session()?),
        shot(
            "marked",
            120,
            30,
            with(&|a| {
                for m in ["r1-u05", "r1-u08", "r2-u01"] {
                    if let Ok(m) = id(m) {
                        a.select(&m);
                    }
                    let _ = update(a, Action::ToggleMark);
                }
            })?,
        ),
        shot(
            "bulk-assign",
            120,
            30,
            with(&|a| {
                for m in ["r1-u05", "r1-u08", "r2-u01"] {
                    if let Ok(m) = id(m) {
                        a.select(&m);
                    }
                    let _ = update(a, Action::ToggleMark);
                }
                let _ = update(a, Action::StartAssign);
            })?,
        ),
        shot(
            "bulk-rack",
            100,
            30,
            with(&|a| {
                for m in ["r2-u01", "r2-u02"] {
                    if let Ok(m) = id(m) {
                        a.select(&m);
                    }
                    let _ = update(a, Action::ToggleMark);
                }
                // the rack they share is filled in; the units count up from 10
                let _ = update(a, Action::StartEdit);
                let _ = update(a, Action::NextField);
                typing(a, "10");
            })?,
        ),
        shot(
            "unassign",
            100,
            30,
            with(&|a| {
                let _ = update(a, Action::Unassign);
            })?,
        ),
        shot(
            "quit-80x24",
            80,
            24,
            with(&|a| {
                let _ = update(a, Action::Quit);
            })?,
        ),
        shot("empty", 80, 24, empty()?),
        shot("first-minute", 120, 30, first_minute()?),
        shot("first-minute-80x24", 80, 24, first_minute()?),
        shot("event", 100, 30, {
            // the events page, two lines up from the newest: dnsmasq's status in full
            let mut a = first_minute()?;
            let _ = update(&mut a, Action::ShowPage(Page::Events));
            let _ = update(&mut a, Action::Up);
            let _ = update(&mut a, Action::Up);
            let _ = update(&mut a, Action::OpenDetail);
            a.prepare();
            a
        }),
        shot("event-repeated", 100, 30, {
            let mut a = first_minute()?;
            let _ = update(&mut a, Action::ShowPage(Page::Events));
            let _ = update(&mut a, Action::OpenDetail);
            a.prepare();
            a
        }),
    ])
}
