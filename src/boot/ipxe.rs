//! iPXE scripts: the generic chain script and each machine's own (its profile's, a hold-and-poll
//! script, or local-disk boot once installed).

use std::net::Ipv4Addr;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::{BootError, BootState};
use crate::engine::{EngineError, Registration};
use crate::inventory::InventoryError;
use crate::machine::{IdError, Machine, Phase, State as MState};
use crate::templates::context::boot_base;
use crate::templates::Kind;

/// Seconds a held machine waits before asking again.
const HOLD_POLL_SECS: u32 = 5;

fn script(body: String) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body)
}

/// The URL iPXE fills in with what it knows about the machine.
fn machine_url(base: &str) -> String {
    format!(
        "{base}/ipxe?mac=${{net0/mac}}&uuid=${{uuid}}&serial=${{serial}}&arch=${{buildarch}}&platform=${{platform}}"
    )
}

pub async fn chain(State(s): State<BootState>) -> impl IntoResponse {
    let base = boot_base(s.engine.config(), s.boot_addr);
    script(format!(
        "#!ipxe\n# mayu: identify this machine and fetch its own script\nchain --replace --autofree {}\n",
        machine_url(&base)
    ))
}

/// What iPXE says about a machine in `/ipxe?mac=…&uuid=…&serial=…&arch=…` (see
/// [`machine_url`]), decoded as the boot port decodes it.
#[derive(Debug, Deserialize)]
pub struct IpxeQuery {
    mac: Option<String>,
    uuid: Option<String>,
    serial: Option<String>,
    arch: Option<String>,
    #[allow(dead_code)]
    platform: Option<String>,
}

impl IpxeQuery {
    /// Decodes a query string (percent-encoded, as iPXE sends it) with the boot port's own
    /// extractor; `None` where the boot port would refuse it.
    pub fn parse(query: &str) -> Option<IpxeQuery> {
        let uri = format!("/ipxe?{query}").parse::<axum::http::Uri>().ok()?;
        Query::<IpxeQuery>::try_from_uri(&uri)
            .ok()
            .map(|Query(q)| q)
    }

    /// The registration the query asks for, from address `ip`: blank values are absent, and a
    /// MAC must parse.
    pub fn registration(self, ip: Option<Ipv4Addr>) -> Result<Registration, IdError> {
        let mac = nonblank(self.mac).map(|m| m.parse()).transpose()?;
        Ok(Registration {
            mac,
            uuid: nonblank(self.uuid),
            serial: nonblank(self.serial),
            arch: nonblank(self.arch),
            ip,
        })
    }
}

/// iPXE leaves `${var}` unexpanded-but-empty for unknown settings; treat blanks as absent.
fn nonblank(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

pub async fn machine_script(
    State(s): State<BootState>,
    super::ClientIp(ip): super::ClientIp,
    Query(q): Query<IpxeQuery>,
) -> Result<impl IntoResponse, BootError> {
    let ip = match ip {
        Some(std::net::IpAddr::V4(v4)) if !v4.is_loopback() => Some(v4),
        _ => None,
    };
    let reg = q
        .registration(ip)
        .map_err(|e| BootError::bad_request(e.to_string()))?;
    // Memory only, on this worker: a known machine that changed nothing costs no disk and no
    // thread hop; a change is answered once it is durable.
    let serving_profile = true;
    let mut tries = 0u32;
    let (m, rev) = loop {
        let written = s
            .engine
            .begin_register(reg.clone(), Phase::Ipxe, serving_profile)?;
        let (rev, id) = (written.rev, written.machine.id.clone());
        match written.durable().await {
            Ok(m) => break (m, rev),
            // A shared inventory: another server changed this machine or took the seat first.
            // The machine is back as the store holds it; decide again on that.
            Err(EngineError::Inventory(InventoryError::Conflict(why)))
                if tries < CONFLICT_RETRIES =>
            {
                tries += 1;
                tracing::debug!(%id, %why, tries, "registration decided again after a conflict");
                tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(tries))).await;
            }
            // The shared inventory is unreachable: a machine this server knows is served as
            // it stands; a new one waits in the hold loop until the store answers again.
            Err(EngineError::Inventory(InventoryError::Unavailable(why))) => {
                tracing::warn!(%id, %why, "inventory unreachable: serving from memory");
                match s.engine.get(&id) {
                    Some(m) => break (m, 0),
                    None => {
                        let base = boot_base(s.engine.config(), s.boot_addr);
                        return Ok(script(hold_script(
                            &id,
                            &base,
                            "the inventory is unreachable",
                        )));
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    let (body, detail) = script_for(&s, &m, rev)?;
    s.engine.announce_step(&m, Phase::Ipxe, detail);
    Ok(script(body))
}

/// How often a registration is decided again after a shared inventory's conflict.
const CONFLICT_RETRIES: u32 = 8;

/// Waits and asks again: a held machine, or one the inventory cannot take now.
fn hold_script(id: &crate::machine::MachineId, base: &str, why: &str) -> String {
    format!(
        "#!ipxe\necho mayu: {id} is {why}\nsleep {HOLD_POLL_SECS}\nchain --replace --autofree {url}\n",
        url = machine_url(base)
    )
}

/// Chooses and renders what this machine boots now.
fn script_for(s: &BootState, m: &Machine, rev: u64) -> Result<(String, String), BootError> {
    let config = s.engine.config();
    let base = boot_base(config, s.boot_addr);
    let Some(profile) = m.profile.as_deref().and_then(|p| config.profile(p)) else {
        let body = hold_script(&m.id, &base, "waiting for an operator to assign a profile");
        return Ok((body, "held: waiting for assignment".into()));
    };
    // Installed (the installer reported its disk written) or running: the disk holds the
    // profile's system, so the machine boots it instead of installing again.
    let on_disk = m.state == MState::Running || (m.state == MState::Installing && m.installed);
    if profile.boot_from_disk && on_disk && !m.reinstall {
        let body = format!(
            "#!ipxe\necho mayu: {id} is installed ({p}); booting from local disk\nsanboot --no-describe --drive 0x80 || exit\n",
            id = m.id,
            p = profile.name
        );
        return Ok((body, "local disk".into()));
    }
    // Installing was recorded with the registration (`serving_profile`).
    let body = s
        .templates
        .render_cached(s.boot_addr, m, rev, Kind::Ipxe)
        .map_err(|e| super::refused(s, format!("iPXE script for {} not served: {e}", m.id)))?;
    Ok((
        body.to_string(),
        format!("profile {} script served", profile.name),
    ))
}
