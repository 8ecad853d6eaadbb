//! Mayu's admin routes, kept for existing scripts and installed machines: `GET /admin/hosts`,
//! `GET /admin/mayu_config` and every `PUT /admin/host/{serial}/...` Mayu had
//! (`boot_complete`, `set_provider_id`, `set_ipmi_addr`, `set_etcd_cluster_token`, `set_cabinet`,
//! `set_metadata`, `set_state`, `set_installed`, `mark_fresh`, `override`).
//!
//! They keep Mayu's status codes (202 on success, 400 for an unknown host or bad JSON) and its
//! Go-style field names, matched case-insensitively as Go's JSON decoder does; fields a route
//! does not use are ignored as Mayu ignored them. Errors still carry `{error, detail}`.
//! The same tokens apply as on `/api/v1`; without a token a request is accepted only from an
//! address in `compat.mayu.allow_from` (Mayu's clients send none), and its change is audited
//! with that address as the author.
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::auth::{AdminAccess, ReadAccess};
use super::machines::ApiPath;
use super::{blocking, ApiError, ApiState, BODY_LIMIT};
use crate::engine::Edit;
use crate::import::MAYU_VERSIONS;
use crate::machine::{Machine, Rack, State as MachineState};
use crate::text;
use crate::Engine;

/// The peer's address, as the listener recorded it.
fn peer(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Whether this request may go without a token: no `Authorization` header, and the peer is
/// in `compat.mayu.allow_from`. The address is then the author.
fn tokenless(parts: &Parts, st: &ApiState) -> Result<Option<String>, ApiError> {
    if parts
        .headers
        .contains_key(axum::http::header::AUTHORIZATION)
    {
        return Ok(None);
    }
    let allowed = st.engine.config().compat.mayu.as_ref();
    match (allowed, peer(parts)) {
        (Some(c), Some(ip)) if c.allows(ip) => Ok(Some(ip.to_string())),
        _ => Err(ApiError::Unauthorized(
            "this route needs a token: send `Authorization: Bearer <token>`, or list this \
             client's address in compat.mayu.allow_from"
                .into(),
        )),
    }
}

/// A Mayu-style change: an admin token, or an allowed address.
pub struct MayuWriter(String);

/// A Mayu-style read: any token, or an allowed address.
pub struct MayuReader;

impl FromRequestParts<ApiState> for MayuWriter {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Self, ApiError> {
        match tokenless(parts, st)? {
            Some(address) => Ok(MayuWriter(address)),
            None => Ok(MayuWriter(
                AdminAccess::from_request_parts(parts, st).await?.author(),
            )),
        }
    }
}

impl FromRequestParts<ApiState> for MayuReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Self, ApiError> {
        if tokenless(parts, st)?.is_none() {
            ReadAccess::from_request_parts(parts, st).await?;
        }
        Ok(MayuReader)
    }
}

/// Mayu's cabinet numbers, when our rack is one.
fn cabinet(rack: Option<&Rack>) -> (Option<u64>, Option<u32>) {
    match rack {
        Some(r) => (r.rack.parse().ok(), r.unit),
        None => (None, None),
    }
}

/// Mayu's host record, as far as mayu's model has the same facts.
fn host_json(m: &Machine) -> Value {
    let state = match m.state {
        MachineState::Waiting => "unknown",
        s => s.as_str(),
    };
    let mut o = Map::new();
    o.insert(
        "Serial".into(),
        json!(m.serial.clone().unwrap_or_else(|| m.id.to_string())),
    );
    o.insert("Name".into(), json!(m.id));
    o.insert("Enabled".into(), json!(true));
    o.insert("MacAddresses".into(), json!(m.macs));
    if let Some(ip) = m.ip {
        o.insert("InternalAddr".into(), json!(ip));
    }
    if let Some(a) = &m.ipmi_addr {
        o.insert("IPMIAddr".into(), json!(a));
    }
    if let Some(h) = &m.hostname {
        o.insert("Hostname".into(), json!(h));
    }
    if let Some(p) = &m.provider_id {
        o.insert("ProviderId".into(), json!(p));
    }
    if let Some(p) = &m.profile {
        o.insert("Profile".into(), json!(p));
    }
    if let Some(t) = m.last_boot() {
        o.insert("LastBoot".into(), json!(t));
    }
    if !m.overrides.is_empty() {
        o.insert("Overrides".into(), json!(m.overrides));
    }
    let (cab, unit) = cabinet(m.rack.as_ref());
    if let Some(c) = cab {
        o.insert("Cabinet".into(), json!(c));
    }
    if let Some(u) = unit {
        o.insert("MachineOnCabinet".into(), json!(u));
    }
    if !m.metadata.is_empty() {
        o.insert("FleetMetadata".into(), json!(m.metadata));
    }
    if let Some(t) = &m.etcd_token {
        o.insert("EtcdClusterToken".into(), json!(t));
    }
    for (theirs, ours) in MAYU_VERSIONS {
        if let Some(v) = m.versions.get(ours) {
            o.insert(theirs.into(), json!(v));
        }
    }
    o.insert("State".into(), json!(state));
    Value::Object(o)
}

pub async fn hosts(_: MayuReader, State(st): State<ApiState>) -> Json<Vec<Value>> {
    Json(st.engine.list().iter().map(host_json).collect())
}

/// `GET /admin/mayu_config`: the configuration file as it was loaded (Mayu sent its YAML).
/// Secrets never live in it (tokens and BMC passwords are files of their own).
pub async fn config(_: MayuReader, State(st): State<ApiState>) -> Result<String, ApiError> {
    let file = st.engine.config().file.clone();
    blocking(move || {
        std::fs::read_to_string(&file)
            .map_err(|e| ApiError::Internal(format!("reading the configuration: {e}")))
    })
    .await
}

/// Mayu looked hosts up by serial; ours are found by id, MAC, serial or UUID.
fn host(engine: &Engine, serial: &str) -> Result<Machine, ApiError> {
    engine.find_host(serial).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "host `{}` doesn't exist",
            text::escape_control(serial)
        ))
    })
}

/// The body as a JSON object (an empty body is an empty object).
fn payload(
    body: Result<Bytes, BytesRejection>,
    route: &str,
) -> Result<Map<String, Value>, ApiError> {
    let body = body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "the request body is larger than the limit of {BODY_LIMIT} bytes"
            ))
        } else {
            ApiError::BadRequest(rej.body_text())
        }
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(undecodable(route, "expected an object")),
        Err(e) => Err(undecodable(route, e)),
    }
}

/// A field by Go's rules: exact name first, then any case.
fn field<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    o.get(name).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn string_field(o: &Map<String, Value>, name: &str, route: &str) -> Result<String, ApiError> {
    match field(o, name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(undecodable(route, format!("`{name}` must be a string"))),
        None => Err(ApiError::BadRequest(format!(
            "{route} needs `{name}` in the JSON body"
        ))),
    }
}

/// Runs `call` (an engine change: machine id, author) on the host `serial` names, off the
/// async workers; 202 as Mayu answered.
async fn apply<F>(
    st: ApiState,
    serial: String,
    author: String,
    call: F,
) -> Result<StatusCode, ApiError>
where
    F: FnOnce(&Engine, &Machine, &str) -> Result<Machine, crate::engine::EngineError>
        + Send
        + 'static,
{
    let engine = st.engine.clone();
    blocking(move || {
        let m = host(&engine, &serial)?;
        call(&engine, &m, &author)
            .map(drop)
            .map_err(|e| ApiError::from_engine(e, &engine))
    })
    .await?;
    Ok(StatusCode::ACCEPTED)
}

/// A body Mayu's decoder would have refused (a 400 in its words).
fn undecodable(route: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!(
        "unable to parse json data in {route} request: {why}"
    ))
}

/// A field that breaks [`crate::text`]'s rules, in Mayu's words (a 400, as its decoder gave).
fn invalid(field: &'static str, route: &'static str) -> impl FnOnce(text::TextError) -> ApiError {
    move |error| {
        undecodable(
            route,
            text::FieldError {
                field: field.into(),
                error,
            },
        )
    }
}

/// Applies `edit` to the host as the request's author.
async fn apply_edit(
    st: ApiState,
    serial: String,
    who: MayuWriter,
    edit: Edit,
) -> Result<StatusCode, ApiError> {
    apply(st, serial, who.0, move |engine, m, author| {
        engine.edit(m.id.as_str(), author, edit)
    })
    .await
}

pub async fn boot_complete(
    who: MayuWriter,
    State(st): State<ApiState>,
    ApiPath(serial): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    // Mayu's `mayuctl boot-complete --update-versions` sends the host's software versions.
    let o = payload(body, "boot_complete")?;
    let mut versions = std::collections::BTreeMap::new();
    for (theirs, ours) in MAYU_VERSIONS {
        match field(&o, theirs) {
            Some(Value::String(v)) if !v.is_empty() => {
                text::check_line(v).map_err(invalid(theirs, "boot_complete"))?;
                versions.insert(ours.to_string(), v.clone());
            }
            Some(Value::String(_)) | Some(Value::Null) | None => {}
            Some(_) => {
                return Err(undecodable(
                    "boot_complete",
                    format!("`{theirs}` must be a string"),
                ))
            }
        }
    }
    apply(st, serial, who.0, move |engine, m, author| {
        engine
            .begin_boot_complete_with(m.id.as_str(), author, versions)?
            .wait()
    })
    .await
}

pub async fn set_provider_id(
    who: MayuWriter,
    State(st): State<ApiState>,
    ApiPath(serial): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let o = payload(body, "set_provider_id")?;
    let id = string_field(&o, "ProviderId", "set_provider_id")?;
    text::check_line(&id).map_err(invalid("ProviderId", "set_provider_id"))?;
    let edit = Edit {
        provider_id: Some(id),
        ..Edit::default()
    };
    apply_edit(st, serial, who, edit).await
}

pub async fn set_ipmi_addr(
    who: MayuWriter,
    State(st): State<ApiState>,
    ApiPath(serial): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let o = payload(body, "set_ipmi_addr")?;
    let addr = string_field(&o, "IPMIAddr", "set_ipmi_addr")?;
    // Mayu's field was a net.IP, so anything else failed to decode; stored canonical.
    let addr = text::parse_ip_addr(&addr).map_err(invalid("IPMIAddr", "set_ipmi_addr"))?;
    let edit = Edit {
        ipmi_addr: Some(addr),
        ..Edit::default()
    };
    apply_edit(st, serial, who, edit).await
}

pub async fn set_state(
    who: MayuWriter,
    State(st): State<ApiState>,
    ApiPath(serial): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let o = payload(body, "set_state")?;
    let raw = string_field(&o, "State", "set_state")?;
    // Mayu's `unknown` is a machine nobody has placed yet: our `waiting`.
    let state = if raw.eq_ignore_ascii_case("unknown") {
        MachineState::Waiting
    } else {
        raw.parse::<MachineState>()
            .map_err(|e| undecodable("set_state", text::escape_control(&e)))?
    };
    let edit = Edit {
        state: Some(state),
        ..Edit::default()
    };
    apply_edit(st, serial, who, edit).await
}

pub async fn set_override(
    who: MayuWriter,
    State(st): State<ApiState>,
    ApiPath(serial): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let o = payload(body, "override")?;
    let overrides = match field(&o, "Overrides") {
        Some(Value::Object(map)) if !map.is_empty() => map.clone(),
        Some(Value::Object(_)) | None | Some(Value::Null) => {
            return Err(ApiError::BadRequest("nothing to override".into()))
        }
        Some(_) => return Err(undecodable("override", "`Overrides` must be an object")),
    };
    for k in overrides.keys() {
        text::check_override_key(k).map_err(|e| undecodable("override", e))?;
    }
    let edit = Edit {
        overrides: overrides.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        ..Edit::default()
    };
    apply_edit(st, serial, who, edit).await
}

pub async fn set_etcd_cluster_token(
    who: MayuWriter,
    State(st): State<ApiState>,
    ApiPath(serial): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    const ROUTE: &str = "set_etcd_cluster_token";
    let o = payload(body, ROUTE)?;
    // Mayu stored whatever came, an empty token included (it clears it).
    let token = match field(&o, "EtcdClusterToken") {
        None | Some(Value::Null) => String::new(),
        Some(_) => string_field(&o, "EtcdClusterToken", ROUTE)?,
    };
    text::check_line(&token).map_err(invalid("EtcdClusterToken", ROUTE))?;
    let edit = Edit {
        etcd_token: Some(token),
        ..Edit::default()
    };
    apply_edit(st, serial, who, edit).await
}

pub async fn set_cabinet(
    who: MayuWriter,
    State(st): State<ApiState>,
    ApiPath(serial): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    const ROUTE: &str = "set_cabinet";
    let o = payload(body, ROUTE)?;
    let number = |name: &str| match field(&o, name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| undecodable(ROUTE, format!("`{name}` must be a whole number"))),
    };
    // Go's omitempty drops a zero, so cabinet 0 arrives as no field: the rack is cleared.
    let cabinet = number("Cabinet")?.unwrap_or(0);
    let unit = number("MachineOnCabinet")?
        .map(|u| {
            u32::try_from(u).map_err(|_| undecodable(ROUTE, "`MachineOnCabinet` is too large"))
        })
        .transpose()?;
    apply(st, serial, who.0, move |engine, m, author| {
        // Mayu's request sets the cabinet only; the machine keeps its unit unless one is sent.
        let unit = unit.or(m.rack.as_ref().and_then(|r| r.unit));
        let edit = Edit {
            rack: Some(Rack {
                rack: cabinet.to_string(),
                unit,
            }),
            ..Edit::default()
        };
        engine.edit(m.id.as_str(), author, edit)
    })
    .await
}

pub async fn set_metadata(
    who: MayuWriter,
    State(st): State<ApiState>,
    ApiPath(serial): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    const ROUTE: &str = "set_metadata";
    let o = payload(body, ROUTE)?;
    let labels = match field(&o, "FleetMetadata") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.trim().to_string()),
                _ => Err(undecodable(
                    ROUTE,
                    "`FleetMetadata` must be a list of strings",
                )),
            })
            .filter(|l| !matches!(l, Ok(s) if s.is_empty()))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(undecodable(
                ROUTE,
                "`FleetMetadata` must be a list of strings",
            ))
        }
    };
    let edit = Edit {
        metadata: Some(labels),
        ..Edit::default()
    };
    apply_edit(st, serial, who, edit).await
}

/// `mark_fresh`: Mayu's "install this machine again from scratch on its next boot".
pub async fn mark_fresh(
    who: MayuWriter,
    State(st): State<ApiState>,
    ApiPath(serial): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    apply(st, serial, who.0, |engine, m, author| {
        engine.request_reinstall(m.id.as_str(), author)
    })
    .await
}

/// `set_installed`: the installer finished writing the disk.
pub async fn set_installed(
    who: MayuWriter,
    State(st): State<ApiState>,
    ApiPath(serial): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    apply(st, serial, who.0, |engine, m, author| {
        engine.installed_to_disk(m.id.as_str(), author)
    })
    .await
}
