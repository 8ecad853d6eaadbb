//! From the file as written ([`schema`](super::schema)) to the checked [`Config`]: semantic
//! checks the YAML types cannot express (ranges in the subnet, unique profile names, images and
//! templates that exist), each failure located at its value; spans dropped; every path made
//! absolute and normalised (the one path resolver).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_saphyr::{Location, Spanned};

use super::errors::{ConfigError, ConfigErrors};
use super::schema::{parse_duration, RawConfig, RawDhcp, RawNetwork, RawProfile, RawTemplates};
use super::{
    ClusterConfig, ClusterTls, CompatConfig, Config, DhcpConfig, DhcpMode, MayuCompat,
    NetworkConfig, Profile, ProfileTemplates,
};

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

/// Collects located problems for one file.
struct Findings<'a> {
    file: &'a Path,
    errors: Vec<ConfigError>,
}

impl Findings<'_> {
    fn at(&mut self, loc: &Location, message: String) {
        self.errors.push(ConfigError::at(self.file, loc, message));
    }
}

/// Checks `raw`, read from `file`: the checked config, or every problem found.
pub(super) fn check(file: &Path, raw: RawConfig) -> Result<Config, ConfigErrors> {
    let base = config_folder(file);
    let mut found = Findings {
        file,
        errors: Vec::new(),
    };
    let templates = resolve(&base, &raw.templates);
    let images = resolve(&base, &raw.images);

    let network = network(&base, raw.network, &mut found);

    let mut names = HashSet::new();
    let profiles: Vec<Profile> = raw
        .profiles
        .into_iter()
        .map(|p| profile(p, &images, &templates, &mut names, &mut found))
        .collect();
    if let Some(d) = &raw.default_profile {
        if !names.contains(&d.value) {
            let known: Vec<_> = profiles.iter().map(|p| p.name.as_str()).collect();
            found.at(
                &d.referenced,
                format!(
                    "default_profile `{}` is not a profile; known: {}",
                    d.value,
                    known.join(", ")
                ),
            );
        }
    }
    let compat = compat(raw.compat, &mut found);
    let cluster = raw.cluster.and_then(|c| cluster(&base, c, &mut found));
    if !found.errors.is_empty() {
        return Err(ConfigErrors(found.errors));
    }

    let tokens_file = raw
        .http
        .tokens
        .as_ref()
        .map(|t| resolve(&base, t))
        .unwrap_or_else(|| resolve(&base, Path::new("tokens.json")));
    let mut http = raw.http;
    if let Some(tls) = http.tls.as_mut() {
        tls.cert = resolve(&base, &tls.cert);
        tls.key = resolve(&base, &tls.key);
    }
    Ok(Config {
        file: file.to_path_buf(),
        network,
        http,
        inventory: resolve(&base, &raw.inventory),
        logs: resolve(&base, &raw.logs),
        tftproot: resolve(&base, &raw.tftproot),
        runtime: resolve(&base, &raw.runtime),
        tokens_file,
        templates,
        images,
        audit: raw.audit,
        assignment: raw.assignment,
        default_profile: raw.default_profile.map(|d| d.value),
        profiles,
        templates_env: raw.templates_env,
        operator: raw.operator,
        power: raw.power.map(|mut p| {
            p.secrets = resolve(&base, &p.secrets);
            p
        }),
        compat,
        cluster,
    })
}

/// `cluster`: endpoints, this server's name, the key prefix and TLS files, each problem
/// located; and a mayu built without the `etcd` feature refuses the section.
fn cluster(
    base: &Path,
    raw: Spanned<super::schema::RawCluster>,
    found: &mut Findings,
) -> Option<ClusterConfig> {
    let at = raw.referenced;
    let raw = raw.value;
    if !cfg!(feature = "etcd") {
        found.at(
            &at,
            "cluster: this mayu was built without etcd support (cargo feature `etcd`); \
             build it with `--features etcd` or remove the `cluster:` section"
                .into(),
        );
    }
    let mut ok = true;
    let mut bad = |loc: &Location, message: String| {
        ok = false;
        found.at(loc, message);
    };
    if raw.etcd.value.is_empty() {
        bad(
            &raw.etcd.referenced,
            "cluster.etcd: name at least one endpoint, such as http://10.0.0.11:2379".into(),
        );
    }
    let mut schemes = HashSet::new();
    for e in &raw.etcd.value {
        match etcd_endpoint(&e.value) {
            Ok(scheme) => {
                schemes.insert(scheme);
            }
            Err(why) => bad(&e.referenced, format!("cluster.etcd: `{}` {why}", e.value)),
        }
    }
    if schemes.len() > 1 {
        bad(
            &raw.etcd.referenced,
            "cluster.etcd: mixes http:// and https:// endpoints; use one scheme for all".into(),
        );
    }
    let name = &raw.name;
    if name.value.is_empty()
        || !name
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bad(
            &name.referenced,
            format!(
                "cluster.name `{}` may only hold letters, digits, `-`, `_` and `.`",
                name.value
            ),
        );
    }
    let prefix = match &raw.prefix {
        None => super::DEFAULT_CLUSTER_PREFIX.to_string(),
        Some(p) => {
            let v = &p.value;
            if !v.starts_with('/') || v.len() < 2 || v.ends_with('/') {
                bad(
                    &p.referenced,
                    format!(
                        "cluster.prefix `{v}` must start with `/`, name a key below it and not end with `/` (such as /mayu)"
                    ),
                );
            } else if v.split('/').skip(1).any(str::is_empty) || v.chars().any(char::is_control) {
                bad(
                    &p.referenced,
                    format!("cluster.prefix `{v}` has an empty segment or a control character"),
                );
            }
            v.clone()
        }
    };
    let https = schemes.contains("https");
    let tls = match &raw.tls {
        None => {
            if https {
                bad(
                    &raw.etcd.referenced,
                    "cluster.etcd: https:// endpoints need `cluster.tls: { ca: FILE }`, the CA that signed etcd's certificates".into(),
                );
            }
            None
        }
        Some(t) => {
            if !https && !schemes.is_empty() {
                bad(
                    &t.referenced,
                    "cluster.tls is set but the endpoints are http://; use https:// endpoints or remove it".into(),
                );
            }
            let t = &t.value;
            let mut file = |p: &Spanned<PathBuf>, what: &str| {
                let path = resolve(base, &p.value);
                if !path.is_file() {
                    bad(
                        &p.referenced,
                        format!("cluster.tls.{what}: no file {}", path.display()),
                    );
                }
                path
            };
            let ca = file(&t.ca, "ca");
            let identity = match (&t.cert, &t.key) {
                (Some(c), Some(k)) => Some((file(c, "cert"), file(k, "key"))),
                (None, None) => None,
                (Some(c), None) => {
                    file(c, "cert");
                    bad(
                        &c.referenced,
                        "cluster.tls: a client `cert` needs its `key` too".into(),
                    );
                    None
                }
                (None, Some(k)) => {
                    file(k, "key");
                    bad(
                        &k.referenced,
                        "cluster.tls: a client `key` needs its `cert` too".into(),
                    );
                    None
                }
            };
            Some(ClusterTls { ca, identity })
        }
    };
    ok.then(|| ClusterConfig {
        etcd: raw.etcd.value.iter().map(|e| e.value.clone()).collect(),
        name: raw.name.value.clone(),
        prefix,
        tls,
    })
}

/// An etcd endpoint `http://host:port` or `https://host:port`: its scheme, or why it is not one.
fn etcd_endpoint(url: &str) -> Result<&'static str, String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        ("http", rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        ("https", rest)
    } else {
        return Err("is no http:// or https:// URL such as http://10.0.0.11:2379".into());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err("has no port (etcd's client port is usually 2379)".into());
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("has no valid port (`{port}`)"));
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
    };
    if !host_ok {
        return Err(format!("has no valid host (`{host}`)"));
    }
    Ok(scheme)
}

/// `compat.mayu.allow_from`: each entry a CIDR (or a bare address, one host).
fn compat(raw: super::schema::RawCompat, found: &mut Findings) -> CompatConfig {
    CompatConfig {
        mayu: raw.mayu.map(|m| MayuCompat {
            allow_from: m
                .allow_from
                .iter()
                .filter_map(|c| {
                    let text = c.value.trim();
                    let net = text.parse::<ipnet::IpNet>().or_else(|_| {
                        text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)
                    });
                    match net {
                        Ok(n) => Some(n.trunc()),
                        Err(_) => {
                            found.at(
                                &c.referenced,
                                format!(
                                    "compat.mayu.allow_from: `{text}` is not a CIDR such as 10.77.0.0/24 or an address"
                                ),
                            );
                            None
                        }
                    }
                })
                .collect(),
        }),
    }
}

/// A range as `(first, last)`, if it has exactly two addresses.
fn pair(r: &Spanned<Vec<Ipv4Addr>>) -> Option<(Ipv4Addr, Ipv4Addr)> {
    match r.value.as_slice() {
        [a, b] => Some((*a, *b)),
        _ => None,
    }
}

fn network(base: &Path, net: RawNetwork, found: &mut Findings) -> NetworkConfig {
    let checked = NetworkConfig {
        interface: net.interface,
        address: net.address.value,
        prefix: net.prefix,
        dhcp: DhcpConfig {
            mode: net.dhcp.mode,
            range: net.dhcp.range.as_ref().and_then(pair),
            extra_ranges: net.dhcp.extra_ranges.iter().filter_map(pair).collect(),
            lease_time: net.dhcp.lease_time,
            router: net.dhcp.router.as_ref().map(|r| r.value),
            dns: net.dhcp.dns.clone(),
            known_only: net.dhcp.known_only,
        },
        ntp: net.ntp,
        domain: net.domain,
        ipv6_ra: net.ipv6_ra,
        uefi_snponly: net.uefi_snponly,
        // A bare program name is looked up on PATH; anything with a slash is a path.
        dnsmasq: net.dnsmasq.map(|bin| {
            if bin.components().count() > 1 {
                resolve(base, &bin)
            } else {
                bin
            }
        }),
    };
    match checked.subnet() {
        Err(e) => found.at(&net.address.referenced, e),
        Ok(subnet) => dhcp(&net.dhcp, subnet, &net.address.referenced, found),
    }
    checked
}

fn dhcp(dhcp: &RawDhcp, subnet: ipnet::Ipv4Net, address: &Location, found: &mut Findings) {
    let mut seen: Vec<(Ipv4Addr, Ipv4Addr)> = Vec::new();
    for r in dhcp.range.iter().chain(dhcp.extra_ranges.iter()) {
        let Some((a, b)) = pair(r) else {
            found.at(
                &r.referenced,
                format!("a range is [first, last]; got {} addresses", r.value.len()),
            );
            continue;
        };
        if a > b {
            found.at(
                &r.referenced,
                format!("range starts at {a}, after its end {b}"),
            );
        }
        for ip in [a, b] {
            if !subnet.contains(&ip) {
                found.at(
                    &r.referenced,
                    format!("range address {ip} is outside the subnet {subnet}"),
                );
            }
        }
        if let Some((oa, ob)) = seen.iter().find(|(oa, ob)| a <= *ob && *oa <= b) {
            found.at(
                &r.referenced,
                format!("range {a}–{b} overlaps range {oa}–{ob}"),
            );
        }
        seen.push((a, b));
    }
    if dhcp.mode == DhcpMode::Full && dhcp.range.is_none() {
        found.at(
            address,
            "dhcp mode `full` needs `network.dhcp.range: [first, last]`".into(),
        );
    }
    if let Some(router) = &dhcp.router {
        if !subnet.contains(&router.value) {
            found.at(
                &router.referenced,
                format!("router {} is outside the subnet {subnet}", router.value),
            );
        }
    }
}

fn profile(
    p: RawProfile,
    images: &Path,
    templates: &Path,
    names: &mut HashSet<String>,
    found: &mut Findings,
) -> Profile {
    let name = &p.name;
    if !names.insert(name.value.clone()) {
        found.at(
            &name.referenced,
            format!("duplicate profile name `{}`", name.value),
        );
    }
    if name.value.is_empty()
        || !name
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        found.at(
            &name.referenced,
            format!(
                "profile name `{}` may only hold letters, digits, `-` and `_`",
                name.value
            ),
        );
    }
    let quantity = match &p.quantity {
        None => None,
        Some(q) if q.value < 0 => {
            found.at(
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
                found.at(&q.referenced, format!("quantity {} is too large", q.value));
                None
            }
        },
    };
    if !images.join(&p.image.value).is_dir() || p.image.value.contains('/') {
        found.at(
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
            found.at(
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
            found.at(
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
            found.at(&name.referenced, format!("stall_after: {e}"));
            None
        }
        Some(Ok(d)) => Some(d),
        None => None,
    };
    Profile {
        image_at: (p.image.referenced.line(), p.image.referenced.column()),
        name: p.name.value,
        quantity,
        tags: p.tags,
        selector: p.selector.map(|s| s.value),
        image: p.image.value,
        image_version: p.image_version.map(|v| v.value),
        kernel_args: p.kernel_args,
        templates: profile_templates(p.templates),
        env: p.env,
        boot_from_disk: p.boot_from_disk,
        stall_after,
    }
}

fn profile_templates(t: RawTemplates) -> ProfileTemplates {
    ProfileTemplates {
        ipxe: t.ipxe.value,
        ignition: t.ignition.map(|s| s.value),
        cloud_config: t.cloud_config.map(|s| s.value),
        metadata: t.metadata.map(|s| s.value),
    }
}
