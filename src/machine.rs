//! The machine model: parse-once identifiers ([`Mac`], [`MachineId`]) and the [`Machine`] record.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("`{0}` is not a MAC address; expected six hex pairs like 52:54:00:12:34:56")]
    Mac(String),
    #[error("`{0}` is not a machine id; ids are 1–128 of a-z, 0-9, `.`, `-`, `_` and do not start with `.`")]
    Id(String),
    #[error("a machine needs a serial, a UUID or a MAC address to be identified")]
    NoIdentity,
}

/// A hardware address, parsed once from any common spelling (`:`/`-` separated, or bare hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac([u8; 6]);

impl Mac {
    pub const fn from_octets(o: [u8; 6]) -> Mac {
        Mac(o)
    }

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl FromStr for Mac {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex: String = s
            .trim()
            .chars()
            .filter(|c| *c != ':' && *c != '-' && *c != '.')
            .collect();
        let bad = || IdError::Mac(s.to_string());
        if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).map_err(|_| bad())?;
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A machine's stable identifier, safe as a file name: lower-case serial, else UUID, else MAC.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MachineId(String);

impl MachineId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Picks the identity the way operators expect: a meaningful SMBIOS serial, else the UUID,
    /// else the first MAC. Placeholder serials and UUIDs that vendors ship are skipped.
    pub fn derive(
        serial: Option<&str>,
        uuid: Option<&str>,
        mac: Option<&Mac>,
    ) -> Result<MachineId, IdError> {
        if let Some(id) = serial.filter(|s| meaningful_serial(s)).and_then(sanitize) {
            return Ok(id);
        }
        if let Some(id) = uuid.filter(|u| meaningful_uuid(u)).and_then(sanitize) {
            return Ok(id);
        }
        mac.map(MachineId::from_mac).ok_or(IdError::NoIdentity)
    }

    /// The id of a machine known only by its MAC: `52-54-00-12-34-56`.
    pub fn from_mac(mac: &Mac) -> MachineId {
        MachineId(mac.to_string().replace(':', "-"))
    }
}

fn sanitize(s: &str) -> Option<MachineId> {
    let cleaned: String = s
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    cleaned.parse().ok()
}

const PLACEHOLDER_SERIALS: &[&str] = &[
    "",
    "0",
    "0123456789",
    "1234567890",
    "to be filled by o.e.m.",
    "not specified",
    "not applicable",
    "system serial number",
    "default string",
    "none",
    "n/a",
    "na",
    "unknown",
    "chassis serial number",
    "oem",
    "invalid",
];

/// False for the serials firmware ships when nobody set one, and for VMware's generated ones,
/// which change with the VM and so identify nothing.
pub fn meaningful_serial(s: &str) -> bool {
    let t = s.trim().to_lowercase();
    if PLACEHOLDER_SERIALS.contains(&t.as_str()) {
        return false;
    }
    if t.starts_with("vmware-") || t.starts_with("vmware ") {
        return false;
    }
    // All one character (e.g. "00000000", "xxxxxxxx") is a placeholder too.
    let mut chars = t.chars();
    if let Some(first) = chars.next() {
        if chars.all(|c| c == first) {
            return false;
        }
    }
    true
}

fn meaningful_uuid(u: &str) -> bool {
    let hex: String = u.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let t = hex.to_lowercase();
    !(t.is_empty()
        || t.chars().all(|c| c == '0')
        || t.chars().all(|c| c == 'f')
        || t == "03000200040005000006000700080009")
}

impl FromStr for MachineId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && !s.starts_with('.')
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
            });
        if ok {
            Ok(MachineId(s.to_string()))
        } else {
            Err(IdError::Id(s.to_string()))
        }
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for MachineId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MachineId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a machine is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// known but not assigned to a profile (held, or discovered).
    Waiting,
    /// assigned; its next boot installs the profile.
    Configured,
    /// booting or installing its profile.
    Installing,
    /// reported boot-complete.
    Running,
}

impl State {
    pub const ALL: [State; 4] = [
        State::Waiting,
        State::Configured,
        State::Installing,
        State::Running,
    ];
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Configured => "configured",
            State::Installing => "installing",
            State::Running => "running",
        }
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s.to_lowercase())
            .ok_or_else(|| {
                format!("unknown state `{s}`; allowed: waiting, configured, installing, running")
            })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The boot phases a machine passes, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    FirstSeen,
    Dhcp,
    Ipxe,
    Kernel,
    Initrd,
    Config,
    /// an installed machine booted its own disk (iPXE `sanboot`, or the firmware) and its
    /// installed system reported in.
    DiskBoot,
    BootComplete,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::FirstSeen,
        Phase::Dhcp,
        Phase::Ipxe,
        Phase::Kernel,
        Phase::Initrd,
        Phase::Config,
        Phase::DiskBoot,
        Phase::BootComplete,
    ];
    /// The phase's key in the API, files and metrics (its serde name): `first_seen`, …
    pub fn key(&self) -> &'static str {
        match self {
            Phase::FirstSeen => "first_seen",
            Phase::Dhcp => "dhcp",
            Phase::Ipxe => "ipxe",
            Phase::Kernel => "kernel",
            Phase::Initrd => "initrd",
            Phase::Config => "config",
            Phase::DiskBoot => "disk_boot",
            Phase::BootComplete => "boot_complete",
        }
    }

    /// The phase as the console and logs say it: `first seen`, `booted from disk`, …
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::FirstSeen => "first seen",
            Phase::Dhcp => "dhcp",
            Phase::Ipxe => "ipxe",
            Phase::Kernel => "kernel",
            Phase::Initrd => "initrd",
            Phase::Config => "config",
            Phase::DiskBoot => "booted from disk",
            Phase::BootComplete => "boot complete",
        }
    }
}

/// When each boot phase was last reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Phases {
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_seen: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub dhcp: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ipxe: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub kernel: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub initrd: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub config: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub disk_boot: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub boot_complete: Option<OffsetDateTime>,
}

impl Phases {
    pub fn get(&self, p: Phase) -> Option<OffsetDateTime> {
        match p {
            Phase::FirstSeen => self.first_seen,
            Phase::Dhcp => self.dhcp,
            Phase::Ipxe => self.ipxe,
            Phase::Kernel => self.kernel,
            Phase::Initrd => self.initrd,
            Phase::Config => self.config,
            Phase::DiskBoot => self.disk_boot,
            Phase::BootComplete => self.boot_complete,
        }
    }

    pub fn set(&mut self, p: Phase, at: OffsetDateTime) {
        let slot = match p {
            Phase::FirstSeen => &mut self.first_seen,
            Phase::Dhcp => &mut self.dhcp,
            Phase::Ipxe => &mut self.ipxe,
            Phase::Kernel => &mut self.kernel,
            Phase::Initrd => &mut self.initrd,
            Phase::Config => &mut self.config,
            Phase::DiskBoot => &mut self.disk_boot,
            Phase::BootComplete => &mut self.boot_complete,
        };
        *slot = Some(at);
    }

    /// The most recent phase reached and when.
    pub fn current(&self) -> Option<(Phase, OffsetDateTime)> {
        Phase::ALL
            .iter()
            .filter_map(|p| self.get(*p).map(|t| (*p, t)))
            .max_by_key(|(p, t)| (*t, *p))
    }
}

/// Who put a machine in its profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", content = "name", rename_all = "lowercase")]
pub enum AssignedBy {
    /// the quota rules (config order).
    Rule,
    /// a person or API token, by name.
    Operator(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    pub name: String,
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Nic {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    #[serde(default)]
    pub link: bool,
}

/// What discovery reported about the hardware.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Facts {
    pub cpus: Option<u32>,
    pub cpu_model: Option<String>,
    pub memory_bytes: Option<u64>,
    pub disks: Vec<Disk>,
    pub nics: Vec<Nic>,
    pub vendor: Option<String>,
    pub product: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rack {
    pub rack: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<u32>,
}

/// One machine as the inventory keeps it; serialised as its JSON file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub id: MachineId,
    #[serde(default)]
    pub macs: Vec<Mac>,
    #[serde(default)]
    pub uuid: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub arch: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub assigned_by: Option<AssignedBy>,
    /// rules never move a pinned machine (an operator decided).
    #[serde(default)]
    pub pinned: bool,
    pub state: State,
    /// the next boot installs again even where the profile boots from disk.
    #[serde(default)]
    pub reinstall: bool,
    /// the installer wrote the profile's system to the disk: a `boot_from_disk` profile boots
    /// that disk from now on instead of installing again (no install loop).
    #[serde(default)]
    pub installed: bool,
    #[serde(default)]
    pub phases: Phases,
    #[serde(default)]
    pub overrides: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub ipmi_addr: Option<String>,
    #[serde(default)]
    pub provider_id: Option<String>,
    #[serde(default)]
    pub rack: Option<Rack>,
    #[serde(default)]
    pub facts: Facts,
    #[serde(default)]
    pub notes: String,
    /// free labels such as `role=worker` (Mayu's `FleetMetadata`), for templates and filters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<String>,
    /// the etcd discovery token this machine's cluster joins (Mayu's `EtcdClusterToken`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_token: Option<String>,
    /// software versions the booted machine reported with boot-complete (`os`, `docker`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub versions: BTreeMap<String, String>,
    /// with several boot servers (`cluster:`): the one that saw the machine last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_by: Option<String>,
    /// secret the machine presents to fetch its configs and report boot-complete; derived from
    /// the inventory's key and the id (`inventory::machine_key`), never written to the file.
    /// A token found in an old file is read here once and kept only as its hash.
    #[serde(default, skip_serializing)]
    pub token: String,
    /// SHA-256 of a token an older mayu stored in the file: still accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_token_sha256: Option<String>,
    /// set while the machine has been in one boot phase longer than its profile allows
    /// (`engine::stalls`); live state: shown by the API and events, never written to its file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<Stall>,
}

/// A machine stuck in one boot phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stall {
    /// the phase it has not left.
    pub phase: Phase,
    /// when it reached that phase.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// the profile's limit it went over, in seconds.
    pub after_secs: u64,
}

impl Machine {
    pub fn new(id: MachineId, token: String, now: OffsetDateTime) -> Machine {
        let mut phases = Phases::default();
        phases.set(Phase::FirstSeen, now);
        Machine {
            id,
            macs: Vec::new(),
            uuid: None,
            serial: None,
            arch: None,
            hostname: None,
            ip: None,
            profile: None,
            assigned_by: None,
            pinned: false,
            state: State::Waiting,
            reinstall: false,
            installed: false,
            phases,
            overrides: BTreeMap::new(),
            ipmi_addr: None,
            provider_id: None,
            rack: None,
            facts: Facts::default(),
            notes: String::new(),
            metadata: Vec::new(),
            etcd_token: None,
            versions: BTreeMap::new(),
            seen_by: None,
            token,
            legacy_token_sha256: None,
            stall: None,
        }
    }

    /// When it last reported boot-complete, as RFC 3339.
    pub fn last_boot(&self) -> Option<String> {
        self.phases.boot_complete.and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
    }

    /// Whether `presented` is this machine's token (or the token an older mayu gave it), in
    /// time that does not depend on where they differ.
    pub fn accepts_token(&self, presented: &str) -> bool {
        let same = |a: &[u8], b: &[u8]| {
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        };
        (!self.token.is_empty() && same(self.token.as_bytes(), presented.as_bytes()))
            || self.legacy_token_sha256.as_deref().is_some_and(|h| {
                same(
                    h.as_bytes(),
                    crate::inventory::machine_key::legacy_hash(presented).as_bytes(),
                )
            })
    }

    /// The record as the operator API shows it: the token never leaves the engine this way.
    pub fn redacted(&self) -> Machine {
        let mut m = self.clone();
        m.token = String::new();
        m
    }
}

/// RFC 1123 host names: dot-separated labels of letters, digits and inner `-`.
pub fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A fresh random secret, hex encoded.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_phase_key_is_its_serde_name() {
        for p in super::Phase::ALL {
            assert_eq!(
                serde_json::to_value(p).ok(),
                Some(serde_json::Value::String(p.key().into()))
            );
        }
    }

    use super::*;

    #[test]
    fn mac_spellings() {
        let a: Mac = "52:54:00:AB:cd:01".parse().unwrap();
        let b: Mac = "52-54-00-ab-cd-01".parse().unwrap();
        let c: Mac = "525400abcd01".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.to_string(), "52:54:00:ab:cd:01");
        assert!("52:54:00".parse::<Mac>().is_err());
        assert!("zz:54:00:ab:cd:01".parse::<Mac>().is_err());
    }

    #[test]
    fn id_prefers_meaningful_serial() {
        let mac: Mac = "52:54:00:ab:cd:01".parse().unwrap();
        let uuid = "4C4C4544-0042-3510-8052-B4C04F4B4E32";
        let id = MachineId::derive(Some("ABC123"), Some(uuid), Some(&mac)).unwrap();
        assert_eq!(id.as_str(), "abc123");
        for placeholder in [
            "0123456789",
            "To be filled by O.E.M.",
            "Not Specified",
            "System Serial Number",
            "Default string",
            "",
            "VMware-42 1a 2b 3c",
            "00000000",
        ] {
            let id = MachineId::derive(Some(placeholder), Some(uuid), Some(&mac)).unwrap();
            assert_eq!(id.as_str(), uuid.to_lowercase(), "{placeholder}");
        }
        let id = MachineId::derive(Some("Default string"), None, Some(&mac)).unwrap();
        assert_eq!(id.as_str(), "52-54-00-ab-cd-01");
        let zero = "00000000-0000-0000-0000-000000000000";
        let id = MachineId::derive(None, Some(zero), Some(&mac)).unwrap();
        assert_eq!(id.as_str(), "52-54-00-ab-cd-01");
        assert_eq!(
            MachineId::derive(None, None, None),
            Err(IdError::NoIdentity)
        );
    }

    #[test]
    fn ids_are_safe_file_names() {
        let id = MachineId::derive(Some("SN/../x y"), None, None).unwrap();
        assert!(!id.as_str().contains('/'));
        assert!("../etc".parse::<MachineId>().is_err());
        assert!(".hidden".parse::<MachineId>().is_err());
    }
}
