//! The shape of `config.yaml` as serde reads it. Values the checks must locate stay wrapped in
//! parser spans (`Raw*`, private to `config`); the sections that need no check beyond their
//! type (`http`, `audit`, the enums, durations) are read straight into the public types the
//! checked [`Config`](super::Config) keeps.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use crate::selector::Selector;

/// A template environment: free-form values handed to templates as `env`.
pub type Env = BTreeMap<String, serde_json::Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DhcpMode {
    /// mayu's dnsmasq is the network's DHCP server.
    Full,
    /// another DHCP server hands out addresses; dnsmasq only adds boot options.
    Proxy,
    /// no DHCP at all (addresses and boot options come from elsewhere).
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AssignmentMode {
    /// fill profiles by quota, in config order.
    Auto,
    /// hold every new machine until an operator assigns it.
    Manual,
}

/// How long, parsed from `90s`, `5m`, `1h`, `2d` or `infinite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTime(pub Option<Duration>);

impl LeaseTime {
    /// The form dnsmasq understands (`3600s` or `infinite`).
    pub fn dnsmasq(&self) -> String {
        match self.0 {
            Some(d) => format!("{}s", d.as_secs()),
            None => "infinite".into(),
        }
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; use e.g. 90s, 5m, 1h or 2d"))?;
    let per_unit: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(format!(
                "`{s}` has unknown unit `{unit}`; allowed: s, m, h, d"
            ))
        }
    };
    // Found by fuzzing (fuzz/corpus/config/stall-after-overflow.yaml): `999999999999999999m`
    // overflowed u64 seconds, a panic in debug builds and a wrapped, wrong duration in release.
    let secs = n
        .checked_mul(per_unit)
        .ok_or_else(|| format!("`{s}` is too long a duration"))?;
    Ok(Duration::from_secs(secs))
}

impl<'de> Deserialize<'de> for LeaseTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "infinite" {
            return Ok(LeaseTime(None));
        }
        parse_duration(&s)
            .map(|d| LeaseTime(Some(d)))
            .map_err(serde::de::Error::custom)
    }
}

fn default_lease_time() -> LeaseTime {
    LeaseTime(Some(Duration::from_secs(3600)))
}

/// `network.dhcp` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDhcp {
    pub mode: DhcpMode,
    /// first and last address handed out (full mode).
    #[serde(default)]
    pub range: Option<Spanned<Vec<Ipv4Addr>>>,
    /// further ranges, each `[first, last]`.
    #[serde(default)]
    pub extra_ranges: Vec<Spanned<Vec<Ipv4Addr>>>,
    #[serde(default = "default_lease_time")]
    pub lease_time: LeaseTime,
    #[serde(default)]
    pub router: Option<Spanned<Ipv4Addr>>,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    #[serde(default)]
    pub known_only: bool,
}

fn default_prefix() -> u8 {
    24
}

fn default_interface() -> String {
    "mayu0".into()
}

/// `network` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    #[serde(default = "default_interface")]
    pub interface: String,
    pub address: Spanned<Ipv4Addr>,
    #[serde(default = "default_prefix")]
    pub prefix: u8,
    pub dhcp: RawDhcp,
    #[serde(default)]
    pub ntp: Vec<Ipv4Addr>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub ipv6_ra: bool,
    #[serde(default)]
    pub uefi_snponly: bool,
    #[serde(default)]
    pub dnsmasq: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn default_boot_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 4081))
}

fn default_api_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4080))
}

/// `http`; its paths are made absolute by the checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// machine-facing listener: iPXE scripts, configs, assets, boot-complete.
    #[serde(default = "default_boot_addr")]
    pub boot: SocketAddr,
    /// operator-facing listener: the admin API.
    #[serde(default = "default_api_addr")]
    pub api: SocketAddr,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// where API bearer tokens are kept (name → hashed secret).
    #[serde(default)]
    pub tokens: Option<PathBuf>,
    /// most boot-port connections open at once (more wait in the kernel's backlog); default:
    /// half of what the open-file limit leaves after a reserve for the API and files.
    #[serde(default)]
    pub max_boot_connections: Option<NonZeroUsize>,
    /// most API-port connections open at once; default: a quarter of that reserve (128 under
    /// a limit of 1,024, at most 1,024).
    #[serde(default)]
    pub max_api_connections: Option<NonZeroUsize>,
    /// time for a client to send a request's headers or TLS handshake, and the longest an idle
    /// keep-alive connection stays open.
    #[serde(
        default = "default_header_timeout",
        deserialize_with = "positive_duration"
    )]
    pub header_timeout: Duration,
    /// time for a request body to arrive once the server starts reading it.
    #[serde(
        default = "default_body_timeout",
        deserialize_with = "positive_duration"
    )]
    pub body_timeout: Duration,
    /// a connection that moves no byte for this long is asked to close, and dropped after as
    /// long again (clients that stopped reading, stalled bodies).
    #[serde(
        default = "default_idle_timeout",
        deserialize_with = "positive_duration"
    )]
    pub idle_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            boot: default_boot_addr(),
            api: default_api_addr(),
            tls: None,
            tokens: None,
            max_boot_connections: None,
            max_api_connections: None,
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

fn default_header_timeout() -> Duration {
    crate::listen::HEADER_TIMEOUT
}

fn default_body_timeout() -> Duration {
    crate::listen::BODY_TIMEOUT
}

fn default_idle_timeout() -> Duration {
    crate::listen::IDLE_TIMEOUT
}

/// A duration such as `30s` or `2m`; zero is refused (it would close every connection).
fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    match parse_duration(&s) {
        Ok(d) if d.is_zero() => Err(serde::de::Error::custom(format!(
            "`{s}` is too short; use at least 1s"
        ))),
        Ok(d) => Ok(d),
        Err(e) => Err(serde::de::Error::custom(e)),
    }
}

fn yes() -> bool {
    true
}

fn default_author() -> String {
    "mayu".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// commit every change to a git repository in the inventory folder.
    #[serde(default = "yes")]
    pub git: bool,
    /// author of changes made by mayu itself (rules, imports).
    #[serde(default = "default_author")]
    pub author: String,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            git: true,
            author: default_author(),
        }
    }
}

/// A profile's `templates` as written: file names in the templates folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTemplates {
    pub ipxe: Spanned<String>,
    #[serde(default)]
    pub ignition: Option<Spanned<String>>,
    #[serde(default)]
    pub cloud_config: Option<Spanned<String>>,
    #[serde(default)]
    pub metadata: Option<Spanned<String>>,
}

impl RawTemplates {
    pub fn names(&self) -> impl Iterator<Item = &Spanned<String>> {
        std::iter::once(&self.ipxe)
            .chain(self.ignition.iter())
            .chain(self.cloud_config.iter())
            .chain(self.metadata.iter())
    }
}

/// One entry of `profiles` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub quantity: Option<Spanned<i64>>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub selector: Option<Spanned<Selector>>,
    pub image: Spanned<String>,
    #[serde(default)]
    pub image_version: Option<Spanned<String>>,
    #[serde(default)]
    pub kernel_args: String,
    pub templates: RawTemplates,
    #[serde(default)]
    pub env: Env,
    #[serde(default)]
    pub boot_from_disk: bool,
    #[serde(default)]
    pub stall_after: Option<String>,
}

/// The whole file as written; relative paths are still relative to its folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub network: RawNetwork,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default = "d_inventory")]
    pub inventory: PathBuf,
    #[serde(default = "d_logs")]
    pub logs: PathBuf,
    #[serde(default = "d_templates")]
    pub templates: PathBuf,
    #[serde(default = "d_images")]
    pub images: PathBuf,
    #[serde(default = "d_tftproot")]
    pub tftproot: PathBuf,
    #[serde(default = "d_run")]
    pub runtime: PathBuf,
    #[serde(default)]
    pub audit: AuditConfig,
    pub assignment: AssignmentMode,
    #[serde(default)]
    pub default_profile: Option<Spanned<String>>,
    #[serde(default)]
    pub profiles: Vec<RawProfile>,
    #[serde(default)]
    pub templates_env: Env,
    #[serde(default)]
    pub operator: Option<String>,
    /// power control over IPMI (see [`crate::power::PowerSettings`]).
    #[serde(default)]
    pub power: Option<crate::power::PowerSettings>,
    /// drop-in compatibility with other provisioning servers.
    #[serde(default)]
    pub compat: RawCompat,
    /// the etcd inventory (several boot servers, one inventory: `src/cluster/DESIGN.md`).
    #[serde(default)]
    pub cluster: Option<Spanned<RawCluster>>,
}

/// `cluster: { etcd: [URL...], name, prefix, tls: { ca, cert, key } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    /// the etcd endpoints, `http://host:port` or `https://host:port`.
    pub etcd: Spanned<Vec<Spanned<String>>>,
    /// this server, unique in the cluster.
    pub name: Spanned<String>,
    /// every key lives below it (default `/mayu`).
    #[serde(default)]
    pub prefix: Option<Spanned<String>>,
    #[serde(default)]
    pub tls: Option<Spanned<RawClusterTls>>,
}

/// `cluster.tls`: the CA that signed the etcd servers' certificates, and this server's client
/// certificate and key (both or neither); paths relative to the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClusterTls {
    pub ca: Spanned<PathBuf>,
    #[serde(default)]
    pub cert: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub key: Option<Spanned<PathBuf>>,
}

/// `compat: { mayu: { allow_from: [CIDR...] } }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompat {
    #[serde(default)]
    pub mayu: Option<RawMayuCompat>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMayuCompat {
    /// addresses whose Mayu-style requests need no token (installed machines, old scripts).
    #[serde(default)]
    pub allow_from: Vec<Spanned<String>>,
}

fn d_inventory() -> PathBuf {
    "inventory".into()
}
fn d_logs() -> PathBuf {
    "logs".into()
}
fn d_templates() -> PathBuf {
    "templates".into()
}
fn d_images() -> PathBuf {
    "images".into()
}
fn d_tftproot() -> PathBuf {
    "tftproot".into()
}
fn d_run() -> PathBuf {
    "run".into()
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn an_overflowing_duration_is_an_error_not_a_panic() {
        // regression: fuzz target `config` (scripts/fuzz-smoke.sh)
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("999999999999999999m").is_err_and(|e| e.contains("too long")));
        assert!(parse_duration(&format!("{}d", u64::MAX / 86_400 + 1)).is_err());
    }
}
