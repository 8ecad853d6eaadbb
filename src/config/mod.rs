//! The operator's `config.yaml`, read once at the edge: [`Config::load`] parses it
//! (`schema.rs`), checks it (`checks.rs`) and hands the rest of the engine a [`Config`] of plain
//! values whose paths are absolute; every problem is a located [`ConfigError`] (`errors.rs`).

mod checks;
mod errors;
mod schema;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::selector::Selector;

pub use checks::{normalise, resolve_for};
pub use errors::{ConfigError, ConfigErrors};
pub use schema::{
    parse_duration, AssignmentMode, AuditConfig, DhcpMode, Env, HttpConfig, LeaseTime, TlsConfig,
};

/// The checked `network` section.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// the only interface dnsmasq binds to.
    pub interface: String,
    /// the boot server's address as machines reach it.
    pub address: Ipv4Addr,
    /// prefix length of the boot network (the subnet `address` lives in).
    pub prefix: u8,
    pub dhcp: DhcpConfig,
    pub ntp: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    /// advertise the interface's IPv6 prefix with router lifetime 0: iPXE otherwise waits about
    /// 13 s for IPv6 autoconfiguration on networks without router advertisements.
    pub ipv6_ra: bool,
    /// UEFI x86-64 clients get `snponly.efi` instead of `ipxe.efi`.
    pub uefi_snponly: bool,
    /// the dnsmasq binary: absolute, or a bare name looked up on PATH (default: `dnsmasq`).
    pub dnsmasq: Option<PathBuf>,
}

impl NetworkConfig {
    pub fn subnet(&self) -> Result<ipnet::Ipv4Net, String> {
        ipnet::Ipv4Net::new(self.address, self.prefix)
            .map(|n| n.trunc())
            .map_err(|e| format!("prefix {}: {e}", self.prefix))
    }

    /// All DHCP ranges, the main one first.
    pub fn ranges(&self) -> Vec<(Ipv4Addr, Ipv4Addr)> {
        self.dhcp
            .range
            .iter()
            .chain(self.dhcp.extra_ranges.iter())
            .copied()
            .collect()
    }
}

/// The checked `network.dhcp` section: every range is a `(first, last)` pair in the subnet.
#[derive(Debug, Clone)]
pub struct DhcpConfig {
    pub mode: DhcpMode,
    /// first and last address handed out (full mode).
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    /// further ranges.
    pub extra_ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub lease_time: LeaseTime,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// only answer machines the inventory knows (their MACs become static hosts).
    pub known_only: bool,
}

/// A profile's template file names, each known to exist in the templates folder.
#[derive(Debug, Clone)]
pub struct ProfileTemplates {
    pub ipxe: String,
    pub ignition: Option<String>,
    pub cloud_config: Option<String>,
    pub metadata: Option<String>,
}

/// A profile after checking: quantity is known to be non-negative.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    /// how many machines this profile takes; none means no limit.
    pub quantity: Option<u32>,
    pub tags: Vec<String>,
    pub selector: Option<Selector>,
    pub image: String,
    /// the pinned version of a fetched image; `None`: the newest verified one (or a local image).
    pub image_version: Option<String>,
    /// line and column of the profile's `image:` key, for errors found after loading.
    pub image_at: (u64, u64),
    pub kernel_args: String,
    pub templates: ProfileTemplates,
    pub env: Env,
    /// once a machine of this profile runs, iPXE boots its local disk (no install loop).
    pub boot_from_disk: bool,
    /// a machine in one boot phase longer than this is shown as stalled.
    pub stall_after: Option<Duration>,
}

/// The checked configuration, paths resolved against the config file's folder.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub network: NetworkConfig,
    pub http: HttpConfig,
    pub inventory: PathBuf,
    pub logs: PathBuf,
    pub templates: PathBuf,
    pub images: PathBuf,
    pub tftproot: PathBuf,
    pub runtime: PathBuf,
    pub tokens_file: PathBuf,
    pub audit: AuditConfig,
    pub assignment: AssignmentMode,
    pub default_profile: Option<String>,
    pub profiles: Vec<Profile>,
    pub templates_env: Env,
    /// the operator's name in the audit log when the console changes something.
    pub operator: Option<String>,
    /// power control over IPMI; `secrets` is absolute.
    pub power: Option<crate::power::PowerSettings>,
    pub compat: CompatConfig,
    /// the etcd inventory; `None`: this server's folder alone (the local backend).
    pub cluster: Option<ClusterConfig>,
}

/// The checked `cluster` section: the inventory lives in etcd (`src/cluster/DESIGN.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd endpoints, each `http://host:port` or `https://host:port` (all the same scheme).
    pub etcd: Vec<String>,
    /// this server's name, unique in the cluster: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// the key prefix every key lives below: starts with `/`, no trailing `/` (default `/mayu`).
    pub prefix: String,
    /// TLS to etcd (`https://` endpoints); paths absolute.
    pub tls: Option<ClusterTls>,
}

/// `cluster.tls`, paths absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    /// the CA certificate (PEM) the etcd servers' certificates are checked against.
    pub ca: PathBuf,
    /// this server's client certificate and key (PEM), when etcd asks for one.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// The prefix of `cluster:` when none is written.
pub const DEFAULT_CLUSTER_PREFIX: &str = "/mayu";

/// Drop-in compatibility with other provisioning servers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompatConfig {
    /// Mayu's boot-port routes (`/ipxebootscript`, `/images/...`, `/ignition?serial=`) and
    /// token-less `/admin` requests from `allow_from`; `None` when not configured.
    pub mayu: Option<MayuCompat>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MayuCompat {
    pub allow_from: Vec<ipnet::IpNet>,
}

impl MayuCompat {
    /// Whether a request from `ip` may use Mayu's routes without a token.
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.allow_from.iter().any(|n| n.contains(&ip))
    }
}

impl Config {
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// Reads and checks a config file. Every problem is reported, each located.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![ConfigError::unreadable(path, &e)]))?;
        Self::parse(path, &text)
    }

    /// Parses config text as if it were read from `path` (used for relative paths and errors).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let raw: schema::RawConfig = serde_saphyr::from_str(text)
            .map_err(|e| ConfigErrors(vec![ConfigError::parse(path, &e)]))?;
        checks::check(path, raw)
    }
}
