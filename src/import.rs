//! Import of a giantswarm/mayu cluster folder (`cluster.json` + `<serial>/conf.json`) into the
//! inventory, one commit per machine. Unknown fields are kept in the machine's notes.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::machine::{new_token, AssignedBy, Mac, Machine, MachineId, State};
use crate::Engine;

/// The audit author of imported machines.
pub const ACTOR: &str = "mayu-import";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}: not a Mayu cluster folder (no cluster.json)")]
    NotACluster(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Default)]
pub struct ImportReport {
    pub imported: Vec<MachineId>,
    /// with `dry_run`: each machine as it would be written.
    pub planned: Vec<crate::machine::Machine>,
    /// files that were not imported, and why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Mayu's names for the software versions a host reports, and the keys of
/// [`crate::machine::Machine::versions`] they are kept under.
pub const MAYU_VERSIONS: [(&str, &str); 8] = [
    ("CoreOSVersion", "os"),
    ("MayuVersion", "mayu"),
    ("DockerVersion", "docker"),
    ("EtcdVersion", "etcd"),
    ("FleetVersion", "fleet"),
    ("RktVersion", "rkt"),
    ("K8sVersion", "k8s"),
    ("YochuVersion", "yochu"),
];

const KNOWN: &[&str] = &[
    "Serial",
    "MacAddresses",
    "InternalAddr",
    "IPMIAddr",
    "ProviderId",
    "Profile",
    "State",
    "Overrides",
    "Hostname",
    "Cabinet",
    "MachineOnCabinet",
    "LastBoot",
    "FleetMetadata",
    "EtcdClusterToken",
    "CoreOSVersion",
    "MayuVersion",
    "DockerVersion",
    "EtcdVersion",
    "FleetVersion",
    "RktVersion",
    "K8sVersion",
    "YochuVersion",
];

/// A count Mayu wrote (`uint`, omitted or 0 when unset).
fn count(v: Option<&Value>, field: &str) -> Result<Option<u32>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64().map(u32::try_from) {
            Some(Ok(0)) => Ok(None),
            Some(Ok(n)) => Ok(Some(n)),
            _ => Err(format!("{field} {n} is not a rack position")),
        },
        Some(other) => Err(format!("{field} must be a number, not {other}")),
    }
}

/// Mayu's `LastBoot` (RFC 3339; Go's zero time when it never booted).
fn last_boot(v: Option<&Value>) -> Result<Option<OffsetDateTime>, String> {
    let Some(s) = text(v) else { return Ok(None) };
    let t = OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("LastBoot `{s}`: {e}"))?;
    Ok((t.year() > 1).then_some(t))
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

/// Mayu wrote states as names in newer versions and as numbers in older ones.
fn state(v: Option<&Value>) -> Result<Option<State>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(match n.as_u64() {
            Some(0) => None,
            Some(1) => Some(State::Configured),
            Some(2) | Some(3) => Some(State::Installing),
            Some(4) => Some(State::Running),
            _ => return Err(format!("unknown State {n}")),
        }),
        Some(Value::String(s)) => Ok(match s.to_lowercase().as_str() {
            "" | "unknown" => None,
            "configured" => Some(State::Configured),
            "installing" | "installed" => Some(State::Installing),
            "running" => Some(State::Running),
            other => return Err(format!("unknown State `{other}`")),
        }),
        Some(other) => Err(format!("State must be a name or a number, not {other}")),
    }
}

/// Converts one Mayu `conf.json` into a machine (not yet saved).
pub fn convert(engine: &Engine, obj: &Map<String, Value>) -> Result<Machine, String> {
    let serial = text(obj.get("Serial"));
    let mut macs = Vec::new();
    if let Some(list) = obj.get("MacAddresses").and_then(Value::as_array) {
        for m in list {
            let s = m.as_str().ok_or("MacAddresses must hold strings")?;
            macs.push(s.parse::<Mac>().map_err(|e| e.to_string())?);
        }
    }
    let id = MachineId::derive(serial.as_deref(), None, macs.first()).map_err(|e| e.to_string())?;
    let mut m = Machine::new(id, new_token(), OffsetDateTime::now_utc());
    m.serial = serial;
    m.macs = macs;
    m.hostname = text(obj.get("Hostname"));
    m.ip = match text(obj.get("InternalAddr")) {
        Some(ip) => Some(
            ip.parse()
                .map_err(|_| format!("InternalAddr `{ip}` is not an IPv4 address"))?,
        ),
        None => None,
    };
    m.ipmi_addr = text(obj.get("IPMIAddr"));
    if let Some(cabinet) = count(obj.get("Cabinet"), "Cabinet")? {
        m.rack = Some(crate::machine::Rack {
            rack: cabinet.to_string(),
            unit: count(obj.get("MachineOnCabinet"), "MachineOnCabinet")?,
        });
    }
    if let Some(t) = last_boot(obj.get("LastBoot"))? {
        m.phases.set(crate::machine::Phase::BootComplete, t);
    }
    m.provider_id = text(obj.get("ProviderId"));
    if let Some(list) = obj.get("FleetMetadata").and_then(Value::as_array) {
        m.metadata = list
            .iter()
            .filter_map(|v| text(Some(v)))
            .filter(|l| !l.is_empty())
            .collect();
    }
    m.etcd_token = text(obj.get("EtcdClusterToken")).filter(|t| !t.is_empty());
    for (theirs, ours) in MAYU_VERSIONS {
        if let Some(v) = text(obj.get(theirs)).filter(|v| !v.is_empty()) {
            m.versions.insert(ours.into(), v);
        }
    }
    if let Some(o) = obj.get("Overrides").and_then(Value::as_object) {
        m.overrides = o.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    let mut notes = Vec::new();
    if let Some(p) = text(obj.get("Profile")) {
        if engine.config().profile(&p).is_some() {
            m.profile = Some(p);
            m.assigned_by = Some(AssignedBy::Operator(ACTOR.into()));
            m.pinned = true;
            m.state = State::Configured;
        } else {
            notes.push(format!(
                "mayu profile `{p}` is not configured here; machine held"
            ));
            m.pinned = true;
        }
    }
    if let Some(s) = state(obj.get("State"))? {
        if m.profile.is_some() {
            m.state = s;
        }
    }
    let unknown: Map<String, Value> = obj
        .iter()
        .filter(|(k, v)| !KNOWN.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !unknown.is_empty() {
        notes.push(format!(
            "imported from mayu: {}",
            serde_json::to_string(&unknown).unwrap_or_default()
        ));
    }
    m.notes = notes.join("\n");
    // The notes are ours (unknown fields as JSON); a huge leftover is cut, not a reason to
    // leave the machine behind.
    if m.notes.len() > crate::text::MAX_NOTES {
        let mut end = crate::text::MAX_NOTES - "…".len();
        while !m.notes.is_char_boundary(end) {
            end -= 1;
        }
        m.notes.truncate(end);
        m.notes.push('…');
    }
    // Everything else is held to the API's rules; a file that breaks them is skipped with
    // the field named.
    crate::text::check_machine(&m).map_err(|e| e.to_string())?;
    Ok(m)
}

/// Imports every `<dir>/*/conf.json`; bad files are reported and skipped.
pub fn import_dir(engine: &Engine, dir: &Path) -> Result<ImportReport, ImportError> {
    import_dir_with(engine, dir, false)
}

/// [`import_dir`], or with `dry_run` only what it would import and skip: nothing is written.
pub fn import_dir_with(
    engine: &Engine,
    dir: &Path,
    dry_run: bool,
) -> Result<ImportReport, ImportError> {
    if !dir.join("cluster.json").is_file() {
        return Err(ImportError::NotACluster(dir.to_path_buf()));
    }
    let io = |source| ImportError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut confs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        // `.git` and other dot-folders are the store's, not machines.
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path().join("conf.json"))
        .filter(|p| p.is_file())
        .collect();
    confs.sort();
    let mut report = ImportReport::default();
    for path in confs {
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()))
            .and_then(|v| match v {
                Value::Object(o) => Ok(o),
                _ => Err("conf.json is not a JSON object".to_string()),
            })
            .and_then(|o| convert(engine, &o));
        let m = match parsed {
            Ok(m) => m,
            Err(e) => {
                report.skipped.push((path, e));
                continue;
            }
        };
        if let Some(existing) = engine
            .find(m.id.as_str())
            .or_else(|| m.macs.iter().find_map(|mac| engine.by_mac(mac)))
        {
            report
                .skipped
                .push((path, format!("already in the inventory as {}", existing.id)));
            continue;
        }
        let id = m.id.clone();
        if dry_run {
            report.imported.push(id);
            report.planned.push(m);
            continue;
        }
        let booted = m.phases.boot_complete;
        // One commit per machine: the audit groups what is pending, so wait for each.
        match engine
            .import(m, ACTOR, "imported from mayu")
            .and_then(|()| engine.flush())
        {
            Ok(()) => {
                if let Some(at) = booted {
                    engine.imported_boot(&id, at);
                }
                report.imported.push(id)
            }
            Err(e) => report.skipped.push((path, e.to_string())),
        }
    }
    Ok(report)
}
