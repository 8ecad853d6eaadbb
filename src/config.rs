//! The operator's `config.yaml`: its schema, parsing with located errors, and semantic checks.
//!
//! Parsing happens once at the edge; the rest of the engine works on [`Config`] whose paths are
//! already resolved against the config file's folder.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

use crate::selector::Selector;

/// A template environment: free-form values handed to templates as `env`.
pub type Env = BTreeMap<String, serde_json::Value>;

/// One problem found in a config file, located for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in one config file (never empty).
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpConfig {
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
    /// only answer machines the inventory knows (their MACs become static hosts).
    #[serde(default)]
    pub known_only: bool,
}

fn default_prefix() -> u8 {
    24
}

fn default_interface() -> String {
    "mayu0".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// the only interface dnsmasq binds to.
    #[serde(default = "default_interface")]
    pub interface: String,
    /// the boot server's address as machines reach it.
    pub address: Spanned<Ipv4Addr>,
    /// prefix length of the boot network (the subnet `address` lives in).
    #[serde(default = "default_prefix")]
    pub prefix: u8,
    pub dhcp: DhcpConfig,
    #[serde(default)]
    pub ntp: Vec<Ipv4Addr>,
    #[serde(default)]
    pub domain: Option<String>,
    /// advertise the interface's IPv6 prefix with router lifetime 0: iPXE otherwise waits about
    /// 13 s for IPv6 autoconfiguration on networks without router advertisements.
    #[serde(default)]
    pub ipv6_ra: bool,
    /// UEFI x86-64 clients get `snponly.efi` instead of `ipxe.efi`.
    #[serde(default)]
    pub uefi_snponly: bool,
    /// path of the dnsmasq binary (default: found on PATH).
    #[serde(default)]
    pub dnsmasq: Option<PathBuf>,
}

impl NetworkConfig {
    pub fn subnet(&self) -> Result<ipnet::Ipv4Net, String> {
        ipnet::Ipv4Net::new(self.address.value, self.prefix)
            .map(|n| n.trunc())
            .map_err(|e| format!("prefix {}: {e}", self.prefix))
    }

    /// All DHCP ranges, the main one first.
    pub fn ranges(&self) -> Vec<(Ipv4Addr, Ipv4Addr)> {
        self.dhcp
            .range
            .iter()
            .chain(self.dhcp.extra_ranges.iter())
            .filter_map(|r| match r.value.as_slice() {
                [a, b] => Some((*a, *b)),
                _ => None,
            })
            .collect()
    }
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
    pub max_boot_connections: Option<std::num::NonZeroUsize>,
    /// most API-port connections open at once; default: a quarter of that reserve (128 under
    /// a limit of 1,024, at most 1,024).
    #[serde(default)]
    pub max_api_connections: Option<std::num::NonZeroUsize>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileTemplates {
    pub ipxe: Spanned<String>,
    #[serde(default)]
    pub ignition: Option<Spanned<String>>,
    #[serde(default)]
    pub cloud_config: Option<Spanned<String>>,
    #[serde(default)]
    pub metadata: Option<Spanned<String>>,
}

impl ProfileTemplates {
    pub fn names(&self) -> impl Iterator<Item = &Spanned<String>> {
        std::iter::once(&self.ipxe)
            .chain(self.ignition.iter())
            .chain(self.cloud_config.iter())
            .chain(self.metadata.iter())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    pub name: Spanned<String>,
    /// how many machines this profile takes; none means no limit.
    #[serde(default)]
    pub quantity: Option<Spanned<i64>>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub selector: Option<Spanned<Selector>>,
    pub image: Spanned<String>,
    /// a fetched version of `image` (`images/<image>/<version>/`); default: the newest verified.
    #[serde(default)]
    pub image_version: Option<Spanned<String>>,
    #[serde(default)]
    pub kernel_args: String,
    pub templates: ProfileTemplates,
    #[serde(default)]
    pub env: Env,
    /// once a machine of this profile runs, iPXE boots its local disk (no install loop).
    #[serde(default)]
    pub boot_from_disk: bool,
    /// a machine in one boot phase longer than this is shown as stalled.
    #[serde(default)]
    pub stall_after: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    network: NetworkConfig,
    #[serde(default = "default_http")]
    http: HttpConfig,
    #[serde(default = "d_inventory")]
    inventory: PathBuf,
    #[serde(default = "d_logs")]
    logs: PathBuf,
    #[serde(default = "d_templates")]
    templates: PathBuf,
    #[serde(default = "d_images")]
    images: PathBuf,
    #[serde(default = "d_tftproot")]
    tftproot: PathBuf,
    #[serde(default = "d_run")]
    runtime: PathBuf,
    #[serde(default)]
    audit: AuditConfig,
    assignment: AssignmentMode,
    #[serde(default)]
    default_profile: Option<Spanned<String>>,
    #[serde(default)]
    profiles: Vec<ProfileConfig>,
    #[serde(default)]
    templates_env: Env,
    /// the operator's name in the audit log when the console changes something.
    #[serde(default)]
    operator: Option<String>,
}

fn default_http() -> HttpConfig {
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

/// A profile after checking: quantity is known to be non-negative.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
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
    pub boot_from_disk: bool,
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
    pub operator: Option<String>,
}

impl Config {
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// Reads and checks a config file. Every problem is reported, each located.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            }])
        })?;
        Self::parse(path, &text)
    }

    /// Parses config text as if it were read from `path` (used for relative paths and errors).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line,
                column,
                message: plain_message(&e),
            }])
        })?;
        let base = config_folder(path);
        let mut errors = Vec::new();
        let config = build(path, &base, raw, &mut errors);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// The parser's message without its own location suffix or snippet (we print `file:line:col`).
fn plain_message(e: &serde_saphyr::Error) -> String {
    let opts = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
    let text = e.render_with_options(opts);
    let first = text.lines().next().unwrap_or("").trim();
    // "... at line 3, column 5" style suffixes repeat what we already print.
    let cut = first.find(" at line ").unwrap_or(first.len());
    first[..cut].trim_end_matches(',').to_string()
}

/// `p` as the config file at `config_path` means it: relative paths are relative to the
/// file's folder. The one resolver for every path an operator writes.
pub fn resolve_for(config_path: &Path, p: &Path) -> PathBuf {
    resolve(&config_folder(config_path), p)
}

/// `p` made absolute against `base` (itself absolute) and normalised: no `.` or `..`
/// components, so every consumer — dnsmasq refuses any TFTP path holding `/../` — sees one
/// plain path that does not depend on the working directory.
fn resolve(base: &Path, p: &Path) -> PathBuf {
    normalise(&base.join(p))
}

/// Removes `.` and `..` components lexically (`..` at the root stays at the root).
pub fn normalise(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The config file's folder as an absolute path: resolved once, at load, so later changes of
/// the working directory change nothing.
fn config_folder(path: &Path) -> PathBuf {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(canonical) = std::fs::canonicalize(parent) {
        return canonical;
    }
    let absolute = if parent.is_absolute() {
        parent.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(parent))
            .unwrap_or_else(|_| parent.to_path_buf())
    };
    normalise(&absolute)
}

fn build(file: &Path, base: &Path, raw: RawConfig, errors: &mut Vec<ConfigError>) -> Config {
    let mut err = |loc: &serde_saphyr::Location, message: String| {
        errors.push(ConfigError {
            file: file.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
            message,
        })
    };
    let templates = resolve(base, &raw.templates);
    let images = resolve(base, &raw.images);

    // network
    let net = &raw.network;
    match net.subnet() {
        Err(e) => err(&net.address.referenced, e),
        Ok(subnet) => {
            let mut seen: Vec<(Ipv4Addr, Ipv4Addr, &serde_saphyr::Location)> = Vec::new();
            for r in net.dhcp.range.iter().chain(net.dhcp.extra_ranges.iter()) {
                let [a, b] = r.value.as_slice() else {
                    err(
                        &r.referenced,
                        format!("a range is [first, last]; got {} addresses", r.value.len()),
                    );
                    continue;
                };
                if a > b {
                    err(
                        &r.referenced,
                        format!("range starts at {a}, after its end {b}"),
                    );
                }
                for ip in [a, b] {
                    if !subnet.contains(ip) {
                        err(
                            &r.referenced,
                            format!("range address {ip} is outside the subnet {subnet}"),
                        );
                    }
                }
                if let Some((oa, ob, _)) = seen.iter().find(|(oa, ob, _)| a <= ob && oa <= b) {
                    err(
                        &r.referenced,
                        format!("range {a}–{b} overlaps range {oa}–{ob}"),
                    );
                }
                seen.push((*a, *b, &r.referenced));
            }
            if net.dhcp.mode == DhcpMode::Full && net.dhcp.range.is_none() {
                err(
                    &net.address.referenced,
                    "dhcp mode `full` needs `network.dhcp.range: [first, last]`".into(),
                );
            }
            if let Some(router) = &net.dhcp.router {
                if !subnet.contains(&router.value) {
                    err(
                        &router.referenced,
                        format!("router {} is outside the subnet {subnet}", router.value),
                    );
                }
            }
        }
    }

    // profiles
    let mut names = HashSet::new();
    let mut profiles = Vec::new();
    for p in raw.profiles {
        if !names.insert(p.name.value.clone()) {
            err(
                &p.name.referenced,
                format!("duplicate profile name `{}`", p.name.value),
            );
        }
        if p.name.value.is_empty()
            || !p
                .name
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            err(
                &p.name.referenced,
                format!(
                    "profile name `{}` may only hold letters, digits, `-` and `_`",
                    p.name.value
                ),
            );
        }
        let quantity = match &p.quantity {
            None => None,
            Some(q) if q.value < 0 => {
                err(
                    &q.referenced,
                    format!(
                        "quantity {} is negative; use 0 or more, or omit it for no limit",
                        q.value
                    ),
                );
                None
            }
            Some(q) => match u32::try_from(q.value) {
                Ok(v) => Some(v),
                Err(_) => {
                    err(&q.referenced, format!("quantity {} is too large", q.value));
                    None
                }
            },
        };
        if !images.join(&p.image.value).is_dir() || p.image.value.contains('/') {
            err(
                &p.image.referenced,
                format!(
                    "image `{}` has no folder {}",
                    p.image.value,
                    images.join(&p.image.value).display()
                ),
            );
        }
        if let Some(v) = &p.image_version {
            if !crate::images::plain_segment(&v.value) {
                err(
                    &v.referenced,
                    format!(
                        "image_version `{}` is not a version folder name (letters, digits, `.`, `-`, `_`, `+`)",
                        v.value
                    ),
                );
            }
        }
        for t in p.templates.names() {
            if t.value.contains("..") || !templates.join(&t.value).is_file() {
                err(
                    &t.referenced,
                    format!(
                        "template `{}` not found in {}",
                        t.value,
                        templates.display()
                    ),
                );
            }
        }
        let stall_after = match p.stall_after.as_deref().map(parse_duration) {
            Some(Err(e)) => {
                err(&p.name.referenced, format!("stall_after: {e}"));
                None
            }
            Some(Ok(d)) => Some(d),
            None => None,
        };
        profiles.push(Profile {
            name: p.name.value,
            quantity,
            tags: p.tags,
            selector: p.selector.map(|s| s.value),
            image_at: (p.image.referenced.line(), p.image.referenced.column()),
            image: p.image.value,
            image_version: p.image_version.map(|v| v.value),
            kernel_args: p.kernel_args,
            templates: p.templates,
            env: p.env,
            boot_from_disk: p.boot_from_disk,
            stall_after,
        });
    }
    if let Some(d) = &raw.default_profile {
        if !names.contains(&d.value) {
            let known: Vec<_> = profiles.iter().map(|p| p.name.as_str()).collect();
            err(
                &d.referenced,
                format!(
                    "default_profile `{}` is not a profile; known: {}",
                    d.value,
                    known.join(", ")
                ),
            );
        }
    }
    let inventory = resolve(base, &raw.inventory);
    let tokens_file = raw
        .http
        .tokens
        .as_ref()
        .map(|t| resolve(base, t))
        .unwrap_or_else(|| resolve(base, Path::new("tokens.json")));
    let mut network = raw.network;
    // A bare program name is looked up on PATH; anything with a slash is a path.
    if let Some(bin) = network.dnsmasq.take() {
        network.dnsmasq = Some(if bin.components().count() > 1 {
            resolve(base, &bin)
        } else {
            bin
        });
    }
    let mut http = raw.http;
    if let Some(tls) = http.tls.as_mut() {
        tls.cert = resolve(base, &tls.cert);
        tls.key = resolve(base, &tls.key);
    }
    Config {
        file: file.to_path_buf(),
        network,
        http,
        logs: resolve(base, &raw.logs),
        tftproot: resolve(base, &raw.tftproot),
        runtime: resolve(base, &raw.runtime),
        tokens_file,
        inventory,
        templates,
        images,
        audit: raw.audit,
        assignment: raw.assignment,
        default_profile: raw.default_profile.map(|d| d.value),
        profiles,
        templates_env: raw.templates_env,
        operator: raw.operator,
    }
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
