//! The context every template sees: machine, profile, network, URLs, and a merged `env`.

use std::net::SocketAddr;

use serde::Serialize;

use crate::config::{Config, Env, Profile};
use crate::machine::Machine;

/// The machine-facing base URL, e.g. `http://10.77.0.1:4081`.
pub fn boot_base(config: &Config, boot: SocketAddr) -> String {
    format!("http://{}:{}", config.network.address, boot.port())
}

#[derive(Debug, Serialize)]
pub struct Urls {
    /// base of the boot port.
    pub boot: String,
    /// base of the API port (operators only; machines cannot use it).
    pub api: String,
    /// `{boot}/assets/{image}`, or `{boot}/assets/{image}/{version}` for a fetched image (the
    /// machine's `image_version` override, else the profile's, else the newest verified):
    /// kernel and initrd live below it.
    pub assets: String,
    /// the generic chain script.
    pub chain: String,
    /// this machine's configs, with its token.
    pub ignition: String,
    pub cloud_config: String,
    pub metadata: String,
    pub boot_complete: String,
    pub facts: String,
    pub assignment: String,
}

#[derive(Debug, Serialize)]
struct ProfileView<'a> {
    name: &'a str,
    image: &'a str,
    /// the version this machine boots (fetched images only).
    image_version: Option<String>,
    kernel_args: &'a str,
    tags: &'a [String],
    quantity: Option<u32>,
}

#[derive(Debug, Serialize)]
struct NetworkView<'a> {
    address: String,
    prefix: u8,
    interface: &'a str,
    domain: Option<&'a str>,
    router: Option<String>,
    dns: Vec<String>,
    ntp: Vec<String>,
}

/// `global templates_env` ← profile `env` ← machine overrides, as a fresh map for this render
/// only (Mayu mutated one shared map and leaked one host's overrides into the next).
pub fn merged_env(config: &Config, profile: Option<&Profile>, m: &Machine) -> Env {
    let mut env = config.templates_env.clone();
    if let Some(p) = profile {
        env.extend(p.env.clone());
    }
    env.extend(m.overrides.clone());
    env
}

pub fn urls(config: &Config, boot: SocketAddr, profile: Option<&Profile>, m: &Machine) -> Urls {
    let base = boot_base(config, boot);
    let q = format!("id={}&token={}", m.id, m.token);
    let image = profile
        .map(|p| crate::images::asset_dir(config, p, &m.overrides))
        .unwrap_or_else(|| "none".into());
    Urls {
        api: format!("http://{}", config.http.api),
        assets: format!("{base}/assets/{image}"),
        chain: format!("{base}/boot.ipxe"),
        ignition: format!("{base}/ignition?{q}"),
        cloud_config: format!("{base}/cloud-config?{q}"),
        metadata: format!("{base}/metadata?{q}"),
        boot_complete: format!("{base}/boot-complete?{q}"),
        facts: format!("{base}/facts?{q}"),
        assignment: format!("{base}/assignment?{q}"),
        boot: base,
    }
}

/// Builds the Tera context for rendering `m` (in `profile`, if any). A machine that cannot be
/// turned into JSON is an error, never a `null` machine in a rendered config.
pub fn build(
    config: &Config,
    boot: SocketAddr,
    profile: Option<&Profile>,
    m: &Machine,
) -> Result<tera::Context, serde_json::Error> {
    let mut ctx = tera::Context::new();
    let net = &config.network;
    let hostname = m.hostname.clone().unwrap_or_else(|| m.id.to_string());
    let mut machine = serde_json::to_value(m)?;
    if let Some(obj) = machine.as_object_mut() {
        // The token is never serialised with the machine (files, git, API); templates get it.
        obj.insert("token".into(), m.token.clone().into());
        obj.insert("hostname".into(), hostname.into());
        obj.insert(
            "mac".into(),
            m.macs
                .first()
                .map(|x| x.to_string())
                .unwrap_or_default()
                .into(),
        );
    }
    ctx.insert("machine", &machine);
    ctx.insert("token", &m.token);
    if let Some(p) = profile {
        ctx.insert(
            "profile",
            &ProfileView {
                name: &p.name,
                image: &p.image,
                image_version: crate::images::chosen_version(config, p, &m.overrides),
                kernel_args: &p.kernel_args,
                tags: &p.tags,
                quantity: p.quantity,
            },
        );
    }
    ctx.insert(
        "network",
        &NetworkView {
            address: net.address.to_string(),
            prefix: net.prefix,
            interface: &net.interface,
            domain: net.domain.as_deref(),
            router: net.dhcp.router.map(|r| r.to_string()),
            dns: net.dhcp.dns.iter().map(|d| d.to_string()).collect(),
            ntp: net.ntp.iter().map(|d| d.to_string()).collect(),
        },
    );
    ctx.insert("urls", &urls(config, boot, profile, m));
    ctx.insert("env", &merged_env(config, profile, m));
    Ok(ctx)
}
