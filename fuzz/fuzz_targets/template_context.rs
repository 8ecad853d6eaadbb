//! `templates::context::build` for any machine (a machine file's JSON, else one built from the
//! fuzz input) in any of the shipped config's profiles: never panics, the machine always
//! reaches templates as an object, and a machine that passes `text::check_machine` (what every
//! edge enforces) puts no raw control character into the context except where `text.rs` allows
//! one.
#![no_main]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use mayu::machine::{AssignedBy, Disk, Facts, Mac, Machine, MachineId, Nic, Phase, Rack, State};
use serde_json::Value;
use time::OffsetDateTime;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.yaml");

fn config() -> &'static mayu::Config {
    static CONFIG_ONCE: OnceLock<mayu::Config> = OnceLock::new();
    CONFIG_ONCE.get_or_init(|| match mayu::Config::load(Path::new(CONFIG)) {
        Ok(c) => c,
        Err(e) => panic!("the shipped config does not load: {e}"),
    })
}

#[derive(Debug, Arbitrary)]
enum Leaf {
    Null,
    Bool(bool),
    Int(i64),
    Text(String),
    List(Vec<String>),
}

impl From<Leaf> for Value {
    fn from(l: Leaf) -> Value {
        match l {
            Leaf::Null => Value::Null,
            Leaf::Bool(b) => b.into(),
            Leaf::Int(i) => i.into(),
            Leaf::Text(s) => s.into(),
            Leaf::List(v) => v.into(),
        }
    }
}

/// A machine's fields as raw material; ids, MACs and times are made valid the way the engine
/// makes them (derived, parsed, from a clock).
#[derive(Debug, Arbitrary)]
struct Raw {
    id: String,
    macs: Vec<[u8; 6]>,
    uuid: Option<String>,
    serial: Option<String>,
    arch: Option<String>,
    hostname: Option<String>,
    ip: Option<[u8; 4]>,
    profile: Option<Result<u8, String>>,
    assigned_by: Option<Option<String>>,
    pinned: bool,
    state: u8,
    reinstall: bool,
    installed: bool,
    phases: Vec<(u8, u32)>,
    overrides: Vec<(String, Leaf)>,
    ipmi_addr: Option<String>,
    provider_id: Option<String>,
    rack: Option<(String, Option<u32>)>,
    cpus: Option<u32>,
    cpu_model: Option<String>,
    memory_bytes: Option<u64>,
    disks: Vec<(String, u64, Option<String>)>,
    nics: Vec<(String, Option<[u8; 6]>, bool)>,
    vendor: Option<String>,
    product: Option<String>,
    notes: String,
}

fn machine_from(raw: Raw) -> Machine {
    let macs: Vec<Mac> = raw.macs.into_iter().map(Mac::from_octets).collect();
    let id = raw.id.parse::<MachineId>().unwrap_or_else(|_| {
        MachineId::derive(raw.serial.as_deref(), raw.uuid.as_deref(), macs.first())
            .unwrap_or_else(|_| MachineId::from_mac(&Mac::from_octets([0x52, 0x54, 0, 0, 0, 1])))
    });
    let mut m = Machine::new(id, String::new(), OffsetDateTime::UNIX_EPOCH);
    m.macs = macs;
    m.uuid = raw.uuid;
    m.serial = raw.serial;
    m.arch = raw.arch;
    m.hostname = raw.hostname;
    m.ip = raw.ip.map(Ipv4Addr::from);
    m.profile = match raw.profile {
        None => None,
        Some(Ok(i)) => config()
            .profiles
            .get(usize::from(i) % config().profiles.len().max(1))
            .map(|p| p.name.clone()),
        Some(Err(name)) => Some(name),
    };
    m.assigned_by = raw.assigned_by.map(|a| match a {
        None => AssignedBy::Rule,
        Some(name) => AssignedBy::Operator(name),
    });
    m.pinned = raw.pinned;
    m.state = State::ALL[usize::from(raw.state) % State::ALL.len()];
    m.reinstall = raw.reinstall;
    m.installed = raw.installed;
    for (p, secs) in raw.phases {
        // Up to 2106: what a clock gives, and inside RFC 3339's years.
        if let Ok(at) = OffsetDateTime::from_unix_timestamp(i64::from(secs)) {
            m.phases
                .set(Phase::ALL[usize::from(p) % Phase::ALL.len()], at);
        }
    }
    m.overrides = raw
        .overrides
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect::<BTreeMap<_, _>>();
    m.ipmi_addr = raw.ipmi_addr;
    m.provider_id = raw.provider_id;
    m.rack = raw.rack.map(|(rack, unit)| Rack { rack, unit });
    m.facts = Facts {
        cpus: raw.cpus,
        cpu_model: raw.cpu_model,
        memory_bytes: raw.memory_bytes,
        disks: raw
            .disks
            .into_iter()
            .map(|(name, size_bytes, model)| Disk {
                name,
                size_bytes,
                model,
            })
            .collect(),
        nics: raw
            .nics
            .into_iter()
            .map(|(name, mac, link)| Nic {
                name,
                mac: mac.map(Mac::from_octets),
                link,
            })
            .collect(),
        vendor: raw.vendor,
        product: raw.product,
    };
    m.notes = raw.notes;
    m
}

/// Where `text.rs` lets a control character through: notes keep `\n` and `\t`; override values
/// (and so `env`) are JSON by contract; the assigning actor's name is not a machine field.
fn allowed(path: &str, s: &str) -> bool {
    if path == "machine.notes" {
        return s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t');
    }
    path.starts_with("env")
        || path.starts_with("machine.overrides")
        || path.starts_with("machine.assigned_by")
}

fn walk(path: &str, v: &Value, bad: &mut Vec<String>) {
    match v {
        Value::String(s) if s.chars().any(char::is_control) && !allowed(path, s) => {
            bad.push(format!("{path} = {s:?}"))
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(&format!("{path}[{i}]"), item, bad);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if k.chars().any(char::is_control) && !allowed(&here, "") {
                    bad.push(format!("key {here:?}"));
                }
                walk(&here, item, bad);
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let config = config();
    let mut m = match serde_json::from_slice::<Machine>(data) {
        Ok(m) => m,
        Err(_) => match Raw::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(raw) => machine_from(raw),
            Err(_) => return,
        },
    };
    // The engine derives the token (hex) from its key; it is never read from input.
    m.token = "0123456789abcdef0123456789abcdef0123456789abcdef".into();
    let boot = SocketAddr::from(([0, 0, 0, 0], 4081));
    let profile = m.profile.as_deref().and_then(|p| config.profile(p));
    let ctx = mayu::templates::context::build(config, boot, profile, &m)
        .expect("every machine has a template context")
        .into_json();
    assert!(ctx["machine"].is_object(), "machine lost: {m:?}");
    assert_eq!(ctx["machine"]["id"].as_str(), Some(m.id.as_str()));
    if mayu::text::check_machine(&m).is_ok() {
        let mut bad = Vec::new();
        walk("", &ctx, &mut bad);
        assert!(
            bad.is_empty(),
            "raw control characters in the context: {bad:?}"
        );
    }
});
