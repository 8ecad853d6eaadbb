//! Routes a booted machine calls with its id and per-machine token: its rendered configs,
//! hardware facts, assignment polling and boot-complete.

use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{blocking, BootError, BootState, ClientIp};
use crate::engine::{Edit, EngineError, Written};
use crate::machine::{Facts, Machine, Phase};
use crate::templates::{Kind, RenderError};
use crate::text;
use crate::Engine;

#[derive(Debug, Deserialize)]
pub struct Auth {
    id: Option<String>,
    token: Option<String>,
    /// IPMI address found by discovery (facts only).
    ipmi: Option<String>,
    /// Mayu's way of naming the machine (`/ignition?uuid=&serial=`), honoured only from
    /// `compat.mayu.allow_from`.
    uuid: Option<String>,
    serial: Option<String>,
}

/// The machine, if the id exists and the token is its own (or, with Mayu compatibility, the
/// request names it Mayu's way from an allowed address); otherwise 403 revealing nothing.
fn authorise(s: &BootState, q: &Auth, ip: Option<std::net::IpAddr>) -> Result<Machine, BootError> {
    let (Some(id), Some(token)) = (q.id.as_deref(), q.token.as_deref()) else {
        if q.token.is_none() && (q.uuid.is_some() || q.serial.is_some()) {
            super::legacy::allowed(s, ip)?;
            let id = super::legacy::named(s, q.uuid.as_deref(), q.serial.as_deref())
                .ok_or_else(|| {
                    BootError::not_found(
                        "no machine has this serial or UUID; it registers when it boots through /ipxe",
                    )
                })?;
            return id
                .parse()
                .ok()
                .and_then(|id| s.engine.get(&id))
                .ok_or_else(BootError::forbidden);
        }
        return Err(BootError::forbidden());
    };
    let id = id.parse().map_err(|_| BootError::forbidden())?;
    match s.engine.get(&id) {
        Some(m) if s.engine.accepts_token(&m, token) => Ok(m),
        _ => Err(BootError::forbidden()),
    }
}

async fn config(s: BootState, q: Auth, kind: Kind, ip: Option<std::net::IpAddr>) -> Config {
    let started = Instant::now();
    let m = authorise(&s, &q, ip)?;
    let body = s
        .templates
        .render(s.boot_addr, &m, kind)
        .map_err(|e| match e {
            RenderError::NoProfile { .. } | RenderError::NoTemplate { .. } => {
                BootError::not_found(e.to_string())
            }
            RenderError::Template(t) => super::refused(
                &s,
                format!("{} for {} not served: {t}", kind.as_str(), m.id),
            ),
            RenderError::Context { .. } => super::refused(
                &s,
                format!("{} for {} not served: {e}", kind.as_str(), m.id),
            ),
        })?;
    super::note_installing(&s, &m).await?;
    s.engine.boot_step(
        Some(&m.id),
        Phase::Config,
        format!("{} served", kind.as_str()),
        Some(body.len() as u64),
        Some(started.elapsed().as_millis() as u64),
    );
    let ctype = match kind {
        Kind::Ignition => "application/vnd.coreos.ignition+json",
        Kind::CloudConfig => "text/cloud-config; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, ctype)], body).into_response())
}

/// What the config routes answer: the rendered config with its content type.
type Config = Result<Response, BootError>;

/// `GET /ignition`, `/cloud-config`, `/metadata`: one [`config`] each.
pub async fn ignition(
    State(s): State<BootState>,
    ClientIp(ip): ClientIp,
    Query(q): Query<Auth>,
) -> Config {
    config(s, q, Kind::Ignition, ip).await
}
pub async fn cloud_config(
    State(s): State<BootState>,
    ClientIp(ip): ClientIp,
    Query(q): Query<Auth>,
) -> Config {
    config(s, q, Kind::CloudConfig, ip).await
}
pub async fn metadata(
    State(s): State<BootState>,
    ClientIp(ip): ClientIp,
    Query(q): Query<Auth>,
) -> Config {
    config(s, q, Kind::Metadata, ip).await
}

pub async fn boot_complete(
    State(s): State<BootState>,
    Query(q): Query<Auth>,
) -> Result<impl IntoResponse, BootError> {
    let m = reported(&s, &q, Engine::begin_boot_complete).await?;
    Ok(Json(serde_json::json!({ "id": m.id, "state": m.state })))
}

/// The machine's own report (`begin`, by the machine as its actor), once it is durable.
async fn reported(
    s: &BootState,
    q: &Auth,
    begin: fn(&Engine, &str, &str) -> Result<Written, EngineError>,
) -> Result<Machine, BootError> {
    let m = authorise(s, q, None)?;
    let actor = m.id.to_string();
    Ok(begin(&s.engine, m.id.as_str(), &actor)?.durable().await?)
}

/// The installer wrote the profile's system to this machine's disk (its last step before it
/// reboots); the machine's next network boot is handed `sanboot` of that disk.
pub async fn installed(
    State(s): State<BootState>,
    Query(q): Query<Auth>,
) -> Result<impl IntoResponse, BootError> {
    let m = reported(&s, &q, Engine::begin_installed_to_disk).await?;
    Ok(Json(
        serde_json::json!({ "id": m.id, "state": m.state, "installed": m.installed }),
    ))
}

/// Facts arrive as JSON; unknown keys are refused (a typo must not silently vanish).
pub async fn facts(
    State(s): State<BootState>,
    Query(q): Query<Auth>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, BootError> {
    let m = authorise(&s, &q, None)?;
    let facts: Facts =
        serde_json::from_slice(&body).map_err(|e| BootError::bad_request(format!("facts: {e}")))?;
    // Machine text is data: every string one line of bounded length, the BMC address an IP
    // address (canonical spelling), or the whole report is refused and nothing changes.
    text::check_facts(&facts).map_err(|e| BootError::bad_request(e.to_string()))?;
    let ipmi = q
        .ipmi
        .filter(|i| !i.trim().is_empty())
        .map(|i| text::ipmi_addr("ipmi", &i))
        .transpose()
        .map_err(|e| BootError::bad_request(e.to_string()))?;
    let engine = s.engine.clone();
    let m = blocking(move || {
        let m = engine.set_facts(m.id.as_str(), facts)?;
        match ipmi {
            Some(addr) if m.ipmi_addr.as_deref() != Some(addr.as_str()) => {
                let actor = m.id.to_string();
                engine.edit(
                    m.id.as_str(),
                    &actor,
                    Edit {
                        ipmi_addr: Some(addr),
                        ..Edit::default()
                    },
                )
            }
            _ => Ok(m),
        }
    })
    .await??;
    Ok(Json(assignment_of(&s, &m)))
}

fn assignment_of(s: &BootState, m: &Machine) -> serde_json::Value {
    let default = s.engine.config().default_profile.as_deref();
    let real = m.profile.as_deref().filter(|p| Some(*p) != default);
    serde_json::json!({
        "id": m.id,
        "profile": m.profile,
        "state": m.state,
        // Reboot into the assigned profile once it is a real one (not the discovery default).
        "boot": real.is_some(),
    })
}

pub async fn assignment(
    State(s): State<BootState>,
    Query(q): Query<Auth>,
) -> Result<impl IntoResponse, BootError> {
    let m = authorise(&s, &q, None)?;
    Ok(Json(assignment_of(&s, &m)))
}
