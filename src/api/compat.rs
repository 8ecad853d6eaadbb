//! Mayu's old admin routes, kept for existing scripts: `GET /admin/hosts` and
//! `PUT /admin/host/{serial}/{boot_complete,set_provider_id,set_ipmi_addr,set_state,override}`.
//!
//! They keep Mayu's status codes (202 on success, 400 for an unknown host or bad JSON) and its
//! Go-style field names, matched case-insensitively as Go's JSON decoder does; fields a route
//! does not use are ignored as Mayu ignored them. Errors still carry `{error, detail}`, and the
//! same tokens apply as on `/api/v1`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use super::auth::{AdminAccess, ReadAccess};
use super::machines::ApiPath;
use super::{blocking, ApiError, ApiState, BODY_LIMIT};
use crate::engine::Edit;
use crate::machine::{Machine, State as MachineState};
use crate::text;
use crate::Engine;

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
    if let Some(t) = m.phases.boot_complete.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    }) {
        o.insert("LastBoot".into(), json!(t));
    }
    if !m.overrides.is_empty() {
        o.insert("Overrides".into(), json!(m.overrides));
    }
    o.insert("State".into(), json!(state));
    Value::Object(o)
}

pub async fn hosts(_: ReadAccess, State(st): State<ApiState>) -> Json<Vec<Value>> {
    Json(st.engine.list().iter().map(host_json).collect())
}

/// Mayu looked hosts up by serial; ours are found by id, MAC or serial.
fn host(engine: &Engine, serial: &str) -> Result<Machine, ApiError> {
    let lower = serial.to_lowercase();
    engine
        .find(serial)
        .or_else(|| engine.find(&lower))
        .or_else(|| {
            engine.list().into_iter().find(|m| {
                m.serial
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(serial))
            })
        })
        .ok_or_else(|| {
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
        Ok(_) => Err(ApiError::BadRequest(format!(
            "unable to parse json data in {route} request: expected an object"
        ))),
        Err(e) => Err(ApiError::BadRequest(format!(
            "unable to parse json data in {route} request: {e}"
        ))),
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
        Some(_) => Err(ApiError::BadRequest(format!(
            "unable to parse json data in {route} request: `{name}` must be a string"
        ))),
        None => Err(ApiError::BadRequest(format!(
            "{route} needs `{name}` in the JSON body"
        ))),
    }
}

async fn apply<F>(st: ApiState, serial: String, f: F) -> Result<StatusCode, ApiError>
where
    F: FnOnce(&Engine, &Machine) -> Result<(), ApiError> + Send + 'static,
{
    let engine = st.engine.clone();
    blocking(move || {
        let m = host(&engine, &serial)?;
        f(&engine, &m)
    })
    .await?;
    Ok(StatusCode::ACCEPTED)
}

/// A field that breaks [`crate::text`]'s rules, in Mayu's words (a 400, as its decoder gave).
fn invalid(field: &'static str, route: &'static str) -> impl FnOnce(text::TextError) -> ApiError {
    move |error| {
        ApiError::BadRequest(format!(
            "unable to parse json data in {route} request: {}",
            text::FieldError {
                field: field.into(),
                error,
            }
        ))
    }
}

/// Applies `edit` to the host as the token's author.
async fn apply_edit(
    st: ApiState,
    serial: String,
    who: &AdminAccess,
    edit: Edit,
) -> Result<StatusCode, ApiError> {
    let author = who.author();
    apply(st, serial, move |engine, m| {
        engine
            .edit(m.id.as_str(), &author, edit)
            .map(drop)
            .map_err(engine_err(engine))
    })
    .await
}

fn engine_err(engine: &Engine) -> impl Fn(crate::engine::EngineError) -> ApiError + '_ {
    move |e| ApiError::from_engine(e, engine)
}

pub async fn boot_complete(
    who: AdminAccess,
    State(st): State<ApiState>,
    ApiPath(serial): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    // Mayu read the OS version from the body; we only need it to be JSON if present.
    payload(body, "boot_complete")?;
    let author = who.author();
    apply(st, serial, move |engine, m| {
        engine
            .boot_complete(m.id.as_str(), &author)
            .map(drop)
            .map_err(engine_err(engine))
    })
    .await
}

pub async fn set_provider_id(
    who: AdminAccess,
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
    apply_edit(st, serial, &who, edit).await
}

pub async fn set_ipmi_addr(
    who: AdminAccess,
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
    apply_edit(st, serial, &who, edit).await
}

pub async fn set_state(
    who: AdminAccess,
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
        raw.parse::<MachineState>().map_err(|e| {
            ApiError::BadRequest(format!(
                "unable to parse json data in set_state request: {}",
                text::escape_control(&e)
            ))
        })?
    };
    let edit = Edit {
        state: Some(state),
        ..Edit::default()
    };
    apply_edit(st, serial, &who, edit).await
}

pub async fn set_override(
    who: AdminAccess,
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
        Some(_) => {
            return Err(ApiError::BadRequest(
                "unable to parse json data in override request: `Overrides` must be an object"
                    .into(),
            ))
        }
    };
    for k in overrides.keys() {
        text::check_override_key(k).map_err(|e| {
            ApiError::BadRequest(format!(
                "unable to parse json data in override request: {e}"
            ))
        })?;
    }
    let edit = Edit {
        overrides: overrides.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        ..Edit::default()
    };
    apply_edit(st, serial, &who, edit).await
}
